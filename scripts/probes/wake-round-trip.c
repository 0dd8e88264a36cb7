/* Round trip of two eventfd wake-ups between two threads (the cost of waking a sleeping peer).
   gcc -O2 -pthread -o /tmp/wake-round-trip scripts/probes/wake-round-trip.c && /tmp/wake-round-trip */
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <stdint.h>
static long ns(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000L+t.tv_nsec;}
int a,b; long d[20000];
void* pong(void*x){uint64_t v; for(int i=0;i<20000;i++){read(a,&v,8); v=1; write(b,&v,8);} return 0;}
int cmp(const void*p,const void*q){long x=*(long*)p,y=*(long*)q;return x<y?-1:x>y;}
int main(){a=eventfd(0,0);b=eventfd(0,0);pthread_t t;pthread_create(&t,0,pong,0);
 for(int i=0;i<20000;i++){uint64_t v=1;long s=ns();write(a,&v,8);read(b,&v,8);d[i]=ns()-s; struct timespec z={0,50000}; if(i%2) nanosleep(&z,0);}
 qsort(d,20000,sizeof(long),cmp); printf("round trip us p50 %ld p90 %ld p99 %ld p999 %ld\n",d[10000]/1000,d[18000]/1000,d[19800]/1000,d[19980]/1000);}
