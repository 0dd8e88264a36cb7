//! Loom models of `rill::ring::spsc`: every interleaving (up to a preemption bound) of small
//! producer/consumer scenarios, with loom checking each slot access for data races and each
//! atomic load against the C++11 memory model.
//!
//! Only built with `RUSTFLAGS="--cfg loom"`, which also switches the ring onto loom's atomics,
//! `UnsafeCell` and `Arc` (the `sync` shim in `spsc.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/tmp/target-loom cargo test -p rill --test ring_loom --release
//! ```
//!
//! The scenarios use capacity 2 and at most 3 items so that the producer wraps around the slots
//! and meets a full ring, and the consumer meets an empty one, while the state space stays small.
//! Waiting loops call `loom::thread::yield_now`, which tells loom to schedule the other thread
//! (without it, a spin loop would make the search infinite).
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use rill::ring::spsc::{self, Consumer, Producer};

/// Runs `model` under loom, exhaustively unless `LOOM_MAX_PREEMPTIONS` sets a bound. The models
/// are small enough that the exhaustive search takes about a second in release mode.
fn check(model: impl Fn() + Sync + Send + 'static) {
    loom::model::Builder::new().check(model);
}

fn push_waiting<T>(producer: &mut Producer<T>, mut value: T) {
    while let Err(refused) = producer.try_push(value) {
        value = refused;
        thread::yield_now();
    }
}

fn pop_waiting<T>(consumer: &mut Consumer<T>) -> T {
    loop {
        if let Some(value) = consumer.pop() {
            return value;
        }
        thread::yield_now();
    }
}

#[test]
fn pushed_items_are_popped_in_order_across_a_wraparound() {
    check(|| {
        let (mut producer, mut consumer) = spsc::channel::<usize>(2);
        let writer = thread::spawn(move || {
            for value in 0..3 {
                push_waiting(&mut producer, value);
            }
        });
        for expected in 0..3 {
            assert_eq!(pop_waiting(&mut consumer), expected);
        }
        writer.join().unwrap();
        assert_eq!(consumer.pop(), None);
    });
}

#[test]
fn staged_items_published_at_once_are_drained_by_pop_batch_in_order() {
    check(|| {
        let (mut producer, mut consumer) = spsc::channel::<Box<usize>>(2);
        let writer = thread::spawn(move || {
            assert!(producer.stage(Box::new(0)).is_ok());
            assert!(producer.stage(Box::new(1)).is_ok());
            producer.publish();
            // The third item needs a slot the consumer frees with pop_batch's single store.
            let mut item = Box::new(2);
            loop {
                match producer.stage(item) {
                    Ok(()) => break,
                    Err(refused) => {
                        item = refused;
                        thread::yield_now();
                    }
                }
            }
            producer.publish();
        });
        let mut expected = 0;
        while expected < 3 {
            let popped = consumer.pop_batch(2, |value| {
                assert_eq!(*value, expected);
                expected += 1;
            });
            if popped == 0 {
                thread::yield_now();
            }
        }
        writer.join().unwrap();
        assert!(consumer.is_empty());
    });
}

#[test]
fn peek_sees_the_published_item_and_pop_returns_the_same_one() {
    check(|| {
        let (mut producer, mut consumer) = spsc::channel::<Box<usize>>(2);
        let writer = thread::spawn(move || {
            push_waiting(&mut producer, Box::new(7));
            push_waiting(&mut producer, Box::new(8));
        });
        loop {
            if let Some(value) = consumer.peek() {
                assert_eq!(**value, 7);
                break;
            }
            thread::yield_now();
        }
        assert_eq!(*pop_waiting(&mut consumer), 7);
        assert_eq!(*pop_waiting(&mut consumer), 8);
        writer.join().unwrap();
    });
}

#[test]
fn an_abandoned_consumer_sees_every_item_the_producer_staged_before_dropping() {
    check(|| {
        let (mut producer, mut consumer) = spsc::channel::<usize>(2);
        let writer = thread::spawn(move || {
            assert_eq!(producer.stage(0), Ok(()));
            assert_eq!(producer.stage(1), Ok(()));
            // Dropped without `publish`: the drop publishes, then raises the flag.
        });
        while !consumer.is_abandoned() {
            thread::yield_now();
        }
        assert_eq!(consumer.pop(), Some(0));
        assert_eq!(consumer.pop(), Some(1));
        assert_eq!(consumer.pop(), None);
        writer.join().unwrap();
    });
}

/// Counts its own drops, so a leak or a double drop shows up as a wrong total.
struct Counted {
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn items_inside_when_both_ends_drop_concurrently_are_dropped_exactly_once() {
    check(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = spsc::channel::<Counted>(2);
        let writer_drops = Arc::clone(&drops);
        let writer = thread::spawn(move || {
            let mut created = 0;
            // Publish one, stage up to two more (the second only fits if the consumer popped);
            // whatever is staged is published by the drop at the end of this closure.
            for _ in 0..3 {
                let item = Counted {
                    drops: Arc::clone(&writer_drops),
                };
                created += 1;
                if created == 1 {
                    assert!(producer.try_push(item).is_ok());
                } else if let Err(refused) = producer.stage(item) {
                    drop(refused);
                }
            }
            created
        });
        // Pop at most one item, then drop the consumer while the producer may still be writing.
        drop(consumer.pop());
        drop(consumer);
        let created = writer.join().unwrap();
        assert_eq!(created, 3);
        // Both ends are gone now, so the ring and every item in it have been dropped.
        assert_eq!(drops.load(Ordering::Relaxed), created);
    });
}
