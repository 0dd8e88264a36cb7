/* How late a 20 us nanosleep wakes up (default timer slack, then 1 ns slack with any argument).
   gcc -O2 -o /tmp/timer-overshoot scripts/probes/timer-overshoot.c && /tmp/timer-overshoot && /tmp/timer-overshoot 1 */
#include <stdio.h>
#include <time.h>
#include <sys/prctl.h>
#include <stdlib.h>
static long ns(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000L+t.tv_nsec;}
int cmp(const void*a,const void*b){long x=*(long*)a,y=*(long*)b;return x<y?-1:x>y;}
int main(int c,char**v){ if(c>1) prctl(PR_SET_TIMERSLACK,1);
 long d[20000]; for(int i=0;i<20000;i++){long t=ns(); struct timespec s={0,20000}; nanosleep(&s,0); d[i]=ns()-t-20000;}
 qsort(d,20000,sizeof(long),cmp); printf("overshoot us p50 %ld p90 %ld p99 %ld p999 %ld\n",d[10000]/1000,d[18000]/1000,d[19800]/1000,d[19980]/1000);}
