//! Throughput of `rill::ring::spsc` against `rtrb`, the SPSC ring it is measured by.
//!
//! Each benchmark moves items from the benchmark thread (producer) to a second thread (consumer)
//! through a ring of `CAPACITY` slots; one criterion iteration is one item moved, so the reported
//! throughput is items per second end to end, including the consumer's check of every item.
//! Both rings are driven the same way: busy-waiting with `spin_loop` when full or empty, since a
//! shard's event loop polls rather than sleeps, and with the producer pinned to the first core and
//! the consumer to the second (when there are two), as shards are.
//!
//! - `*/push_pop`: one item per publish and per release (`try_push`/`pop`, rtrb `push`/`pop`).
//! - `*/batch_64`: up to `BATCH` items per publish and per release (`stage` + `publish` and
//!   `pop_batch`; rtrb `write_chunk_uninit` + `fill_from_iter` and `read_chunk` + `into_iter`).
//!
//! Items are `u64` and a 64-byte message (one cache line of payload).
//!
//! Run with `cargo bench -p rill --bench ring`. The settings are short (3 s of measurement, 20
//! samples) because the development machines have two cores, which both threads occupy.

use std::hint::{black_box, spin_loop};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rill::ring::spsc;

/// Slots in every ring, ours and rtrb's (a power of two, so ours is not rounded up).
const CAPACITY: usize = 1024;

/// Items per publish and per release in the batched benchmarks.
const BATCH: usize = 64;

/// Which core the producer (the benchmark thread) and the consumer run on.
#[derive(Clone, Copy)]
enum Side {
    Producer,
    Consumer,
}

/// Pins the calling thread to its side's core. Does nothing on a machine with fewer than two
/// cores available, where the threads must share.
fn pin(side: Side) {
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    // Read once, before the first pin narrows what this process may see.
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if cores.len() >= 2 {
        let core = match side {
            Side::Producer => cores[0],
            Side::Consumer => cores[1],
        };
        core_affinity::set_for_current(core);
    }
}

/// What the benchmarks move: built from its sequence number, which the consumer reads back.
trait Item: Copy + Send + 'static {
    fn from_sequence(sequence: u64) -> Self;
    fn sequence(&self) -> u64;
}

impl Item for u64 {
    #[inline]
    fn from_sequence(sequence: u64) -> Self {
        sequence
    }

    #[inline]
    fn sequence(&self) -> u64 {
        *self
    }
}

/// A 64-byte message: one cache line of payload, like a small request descriptor. Word `i` holds
/// `sequence + i`, and reading the sequence back sums all eight words, so the whole message is
/// copied and read on both sides.
#[derive(Clone, Copy)]
struct Message64 {
    words: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<Message64>() == 64);

impl Item for Message64 {
    #[inline]
    fn from_sequence(sequence: u64) -> Self {
        let mut words = [0_u64; 8];
        for (offset, word) in (0_u64..).zip(words.iter_mut()) {
            *word = sequence.wrapping_add(offset);
        }
        Self { words }
    }

    #[inline]
    fn sequence(&self) -> u64 {
        // The words sum to `8 * sequence + (0 + 1 + ... + 7)`.
        let total = self
            .words
            .iter()
            .fold(0_u64, |sum, word| sum.wrapping_add(*word));
        total.wrapping_sub(28) / 8
    }
}

/// The sum of `0..count`: what the consumer's running sum must reach.
fn sequence_sum(count: u64) -> u64 {
    count.wrapping_mul(count.wrapping_sub(1)) / 2
}

/// Moves `count` items with `try_push` and `pop`; returns the elapsed time.
fn rill_push_pop<T: Item>(count: u64) -> Duration {
    let (mut producer, mut consumer) = spsc::channel::<T>(CAPACITY);
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(Side::Consumer);
            let mut sum = 0_u64;
            let mut received = 0_u64;
            while received < count {
                match consumer.pop() {
                    Some(item) => {
                        sum = sum.wrapping_add(item.sequence());
                        received += 1;
                    }
                    None => spin_loop(),
                }
            }
            assert_eq!(black_box(sum), sequence_sum(count));
        });
        for sequence in 0..count {
            let mut item = T::from_sequence(sequence);
            while let Err(refused) = producer.try_push(item) {
                item = refused;
                spin_loop();
            }
        }
    });
    start.elapsed()
}

/// Moves `count` items with `stage` + `publish` and `pop_batch`, `BATCH` at a time.
fn rill_batch<T: Item>(count: u64) -> Duration {
    let (mut producer, mut consumer) = spsc::channel::<T>(CAPACITY);
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(Side::Consumer);
            let mut sum = 0_u64;
            let mut received = 0_u64;
            while received < count {
                let popped = consumer.pop_batch(BATCH, |item| {
                    sum = sum.wrapping_add(item.sequence());
                });
                if popped == 0 {
                    spin_loop();
                }
                received += popped as u64;
            }
            assert_eq!(black_box(sum), sequence_sum(count));
        });
        let mut sequence = 0_u64;
        while sequence < count {
            let batch_end = (sequence + BATCH as u64).min(count);
            while sequence < batch_end {
                if producer.stage(T::from_sequence(sequence)).is_ok() {
                    sequence += 1;
                } else {
                    producer.publish();
                    spin_loop();
                }
            }
            producer.publish();
        }
    });
    start.elapsed()
}

/// Moves `count` items with rtrb's `push` and `pop`.
fn rtrb_push_pop<T: Item>(count: u64) -> Duration {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<T>::new(CAPACITY);
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(Side::Consumer);
            let mut sum = 0_u64;
            let mut received = 0_u64;
            while received < count {
                match consumer.pop() {
                    Ok(item) => {
                        sum = sum.wrapping_add(item.sequence());
                        received += 1;
                    }
                    Err(_) => spin_loop(),
                }
            }
            assert_eq!(black_box(sum), sequence_sum(count));
        });
        for sequence in 0..count {
            let mut item = T::from_sequence(sequence);
            while let Err(rtrb::PushError::Full(refused)) = producer.push(item) {
                item = refused;
                spin_loop();
            }
        }
    });
    start.elapsed()
}

/// Moves `count` items with rtrb's chunk API, `BATCH` at a time.
fn rtrb_batch<T: Item>(count: u64) -> Duration {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<T>::new(CAPACITY);
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(Side::Consumer);
            let mut sum = 0_u64;
            let mut received = 0_u64;
            while received < count {
                let available = consumer.slots().min(BATCH);
                if available == 0 {
                    spin_loop();
                    continue;
                }
                let chunk = consumer.read_chunk(available).unwrap();
                for item in chunk.into_iter() {
                    sum = sum.wrapping_add(item.sequence());
                }
                received += available as u64;
            }
            assert_eq!(black_box(sum), sequence_sum(count));
        });
        let mut sequence = 0_u64;
        while sequence < count {
            let remaining = usize::try_from(count - sequence).unwrap_or(usize::MAX);
            let free = producer.slots().min(BATCH).min(remaining);
            if free == 0 {
                spin_loop();
                continue;
            }
            let chunk = producer.write_chunk_uninit(free).unwrap();
            let written = chunk.fill_from_iter((sequence..).map(T::from_sequence));
            sequence += written as u64;
        }
    });
    start.elapsed()
}

fn bench_item<T: Item>(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.throughput(Throughput::Elements(1));
    group.bench_function("rill/push_pop", |bencher| {
        bencher.iter_custom(rill_push_pop::<T>)
    });
    group.bench_function("rtrb/push_pop", |bencher| {
        bencher.iter_custom(rtrb_push_pop::<T>)
    });
    group.bench_function("rill/batch_64", |bencher| {
        bencher.iter_custom(rill_batch::<T>)
    });
    group.bench_function("rtrb/batch_64", |bencher| {
        bencher.iter_custom(rtrb_batch::<T>)
    });
}

fn spsc_throughput(criterion: &mut Criterion) {
    pin(Side::Producer);
    let mut group = criterion.benchmark_group("spsc_u64");
    bench_item::<u64>(&mut group);
    group.finish();

    let mut group = criterion.benchmark_group("spsc_message64");
    bench_item::<Message64>(&mut group);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = spsc_throughput
}
criterion_main!(benches);
