//! Two real threads hammering one `rill::ring::spsc` ring.
//!
//! The unit tests in `engine/src/ring/spsc.rs` pin each rule on one thread; loom
//! (`engine/tests/ring_loom.rs`) proves small cases for every interleaving. These tests cover the
//! gap between them: millions of items through a small ring, so that the producer and the consumer
//! lap each other constantly and every cached-index refresh path runs under real contention. Every
//! test checks the exact order and count of what arrives; the tests with heap-owning items also
//! count live items, so a leak or a double drop (which would also trip the allocator) shows up as a
//! wrong count instead of going unnoticed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use rill::ring::spsc::{self, Consumer, Producer};

/// Items moved by the `u64` tests. Large enough that the two threads lap a 64-slot ring
/// ~150 000 times.
const ITEM_COUNT: u64 = 10_000_000;

/// Items moved by the tests whose items own heap memory (each item allocates twice).
const HEAP_ITEM_COUNT: u64 = 1_000_000;

/// The ring size the brief asks for: small, so the ring is full or empty most of the time.
const CAPACITY: usize = 64;

/// Pushes `value`, yielding the CPU while the ring is full. The machine running CI may have only
/// two cores shared with other tests, so spinning without yielding could starve the consumer.
fn push_waiting<T>(producer: &mut Producer<T>, mut value: T) {
    loop {
        match producer.try_push(value) {
            Ok(()) => return,
            Err(refused) => {
                value = refused;
                thread::yield_now();
            }
        }
    }
}

/// Pops the next item, yielding while the ring is empty; `None` once the producer is gone and
/// the ring is drained.
fn pop_waiting<T>(consumer: &mut Consumer<T>) -> Option<T> {
    loop {
        if let Some(value) = consumer.pop() {
            return Some(value);
        }
        // Read the flag first, then pop once more: anything published before the drop is
        // visible once the flag is.
        if consumer.is_abandoned() {
            return consumer.pop();
        }
        thread::yield_now();
    }
}

#[test]
fn ten_million_u64_arrive_in_order_through_a_ring_of_64() {
    let (mut producer, mut consumer) = spsc::channel::<u64>(CAPACITY);
    let writer = thread::spawn(move || {
        for value in 0..ITEM_COUNT {
            push_waiting(&mut producer, value);
        }
    });
    let mut expected = 0_u64;
    while let Some(value) = pop_waiting(&mut consumer) {
        assert_eq!(value, expected);
        expected += 1;
    }
    writer.join().unwrap();
    assert_eq!(expected, ITEM_COUNT);
    assert!(consumer.is_empty());
}

#[test]
fn ten_million_u64_arrive_in_order_with_staged_publishing_and_batched_pops() {
    let (mut producer, mut consumer) = spsc::channel::<u64>(CAPACITY);
    let writer = thread::spawn(move || {
        let mut value = 0_u64;
        // Batch sizes cycle through 1..=100, so some batches exceed the capacity and hit a full
        // ring half-way through their staging.
        let mut batch_size = 1_u64;
        while value < ITEM_COUNT {
            let batch_end = (value + batch_size).min(ITEM_COUNT);
            while value < batch_end {
                match producer.stage(value) {
                    Ok(()) => value += 1,
                    Err(_) => {
                        producer.publish();
                        thread::yield_now();
                    }
                }
            }
            producer.publish();
            batch_size = batch_size % 100 + 1;
        }
    });
    let mut expected = 0_u64;
    let mut batch_max = 1_usize;
    loop {
        let popped = consumer.pop_batch(batch_max, |value| {
            assert_eq!(value, expected);
            expected += 1;
        });
        batch_max = batch_max % 97 + 1;
        if popped == 0 {
            if consumer.is_abandoned() && consumer.is_empty() {
                break;
            }
            thread::yield_now();
        }
    }
    writer.join().unwrap();
    assert_eq!(expected, ITEM_COUNT);
}

/// An item that owns heap memory and counts how many of its kind are alive.
struct HeapItem {
    value: Box<u64>,
    /// `value`, `value + 1`, `value + 2`: checked on arrival.
    payload: Vec<u64>,
    live: Arc<AtomicUsize>,
}

impl HeapItem {
    fn new(value: u64, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self {
            value: Box::new(value),
            payload: vec![value, value + 1, value + 2],
            live: Arc::clone(live),
        }
    }

    fn assert_intact(&self, expected: u64) {
        assert_eq!(*self.value, expected);
        assert_eq!(self.payload, [expected, expected + 1, expected + 2]);
    }
}

impl Drop for HeapItem {
    fn drop(&mut self) {
        let before = self.live.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a HeapItem was dropped twice");
    }
}

#[test]
fn heap_items_arrive_intact_and_are_each_dropped_once() {
    let live = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = spsc::channel::<HeapItem>(CAPACITY);
    let writer_live = Arc::clone(&live);
    let writer = thread::spawn(move || {
        for value in 0..HEAP_ITEM_COUNT {
            push_waiting(&mut producer, HeapItem::new(value, &writer_live));
        }
    });
    let mut expected = 0_u64;
    while let Some(item) = pop_waiting(&mut consumer) {
        item.assert_intact(expected);
        expected += 1;
    }
    writer.join().unwrap();
    assert_eq!(expected, HEAP_ITEM_COUNT);
    drop(consumer);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn heap_items_left_behind_by_a_consumer_that_quits_early_are_dropped_once() {
    let live = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = spsc::channel::<HeapItem>(CAPACITY);
    let writer_live = Arc::clone(&live);
    let writer = thread::spawn(move || {
        let mut pushed = 0_u64;
        // Keep the ring full, staging in small batches, until the consumer walks away; the items
        // still inside (published or staged) are the ring's to drop.
        while !producer.is_abandoned() {
            for _ in 0..3 {
                if let Err(refused) = producer.stage(HeapItem::new(pushed, &writer_live)) {
                    drop(refused);
                    break;
                }
                pushed += 1;
            }
            producer.publish();
            thread::yield_now();
        }
        // Stage a few more that nobody will ever read, and drop the producer with them staged.
        for _ in 0..2 {
            if producer.stage(HeapItem::new(pushed, &writer_live)).is_ok() {
                pushed += 1;
            }
        }
        pushed
    });
    let mut expected = 0_u64;
    while expected < HEAP_ITEM_COUNT / 2 {
        match consumer.pop() {
            Some(item) => {
                item.assert_intact(expected);
                expected += 1;
            }
            None => thread::yield_now(),
        }
    }
    drop(consumer);
    let pushed = writer.join().unwrap();
    assert!(pushed >= expected);
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "pushed {pushed}, popped {expected}"
    );
}

#[test]
fn a_producer_dropped_with_staged_items_delivers_them_all() {
    for round in 0..1_000_u64 {
        let (mut producer, mut consumer) = spsc::channel::<u64>(8);
        let staged_count = round % 8 + 1;
        let writer = thread::spawn(move || {
            for value in 0..staged_count {
                assert_eq!(producer.stage(value), Ok(()));
            }
            // Dropped here without `publish`: the drop must publish.
        });
        let mut expected = 0_u64;
        while let Some(value) = pop_waiting(&mut consumer) {
            assert_eq!(value, expected);
            expected += 1;
        }
        writer.join().unwrap();
        assert_eq!(expected, staged_count);
    }
}
