//! A bounded, lock-free, single-producer single-consumer ring.
//!
//! # Role
//!
//! The building block for every cross-core hand-off in Rill (see the [`ring`](super) module).
//! [`channel`] allocates the ring once and returns its two ends: a [`Producer`] that writes items
//! and a [`Consumer`] that reads them, in order, exactly once.
//!
//! # Which thread may call what
//!
//! Each end is owned by one thread at a time. Both are `Send` (when `T: Send`) so they can be moved
//! to the thread that will use them, and neither is `Sync` nor `Clone`: every method that changes
//! the ring takes `&mut self`, so the single-writer rule below is enforced by the type system.
//! Neither end ever blocks or waits: a full ring hands the item back, an empty ring returns `None`.
//!
//! # Protocol
//!
//! The ring is an array of `capacity` slots (a power of two) and two free-running counters that
//! wrap around `usize`: `tail`, the number of items ever published, and `head`, the number of items
//! ever consumed. Item number `i` lives in slot `i & (capacity - 1)`. Because `capacity` divides
//! `2^usize::BITS`, the mapping survives the counters wrapping around.
//!
//! ```text
//!            head                         tail           tail_staged
//!              v                            v                 v
//!   ... free | published, readable by the  | staged, private  | free ...
//!            | consumer                    | to the producer  |
//!            <------------------ at most capacity ----------->
//! ```
//!
//! - Only the producer stores `tail`, only the consumer stores `head`; neither ever does a
//!   read-modify-write. `0 <= tail - head <= capacity` (wrapping subtraction) at every instant.
//! - The producer writes a slot, then publishes it with a `Release` store of `tail`; the consumer
//!   loads `tail` with `Acquire` before reading a slot. So the write of an item happens-before its
//!   read.
//! - The consumer moves an item out, then frees its slot with a `Release` store of `head`; the
//!   producer loads `head` with `Acquire` before reusing a slot. So the read of the old item
//!   happens-before the write of the new one.
//! - Each side keeps a cached copy of the other side's counter and reloads it only when the cache
//!   says the ring is full (producer) or empty (consumer). A side touches the other's counter line
//!   when it runs out of room or items it already knows about, not once per item; a producer
//!   that is well ahead of its consumer reads `head` about once per lap.
//! - [`Producer::stage`] writes a slot without storing `tail`; [`Producer::publish`] makes every
//!   staged item visible with one store. [`Consumer::pop_batch`] frees every slot it read with one
//!   store. Batching is how a shard amortises the cross-core cache traffic.
//!
//! # Layout
//!
//! `head` and `tail` each sit on a cache line of their own (`CachePadded`), and the read-only
//! fields (slot pointer, mask) on a third, so a store to one counter invalidates nothing else.
//! The item array is padded by one line on each side and starts on a line boundary when the item
//! size allows, so no item shares a line with unrelated heap data.
//!
//! # Drop
//!
//! Dropping the [`Producer`] **publishes** its staged items (like a buffered writer flushing), so
//! an item accepted by `stage` is never silently lost: the consumer can still pop it, and otherwise
//! it is dropped with the ring. When both ends are gone, the items still inside (those in
//! `head..tail`) are dropped exactly once. Each end can ask whether the other is gone with
//! `is_abandoned`; once [`Consumer::is_abandoned`] returns `true`, every item the producer will
//! ever publish is already visible to [`Consumer::pop`].
//!
//! # Limits
//!
//! `1 <= capacity <= CAPACITY_MAX` slots, rounded up to a power of two. No memory is allocated
//! after [`channel`] returns (unless `T` allocates on its own).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use self::sync::{Arc, AtomicBool, AtomicUsize, Ordering, UnsafeCell};

/// The largest capacity [`channel`] accepts, in slots.
///
/// A ring this large already holds 16 Mi items; anything bigger is a configuration mistake, not a
/// queue. The bound also keeps `capacity` far below `usize::MAX / 2` on 32-bit targets.
pub const CAPACITY_MAX: usize = 1 << 24;

/// The unit of cache coherence the ring keeps its fields and items apart by, in bytes: whatever
/// `CachePadded` pads to on this target (128 on x86_64, where the adjacent-line prefetcher pulls
/// lines in pairs).
const LINE_BYTES: usize = std::mem::align_of::<CachePadded<u8>>();

/// Creates a ring holding up to `capacity` items and returns its two ends.
///
/// `capacity` is rounded up to the next power of two; [`Producer::capacity`] reports the result.
/// All memory for the slots is allocated here and nowhere else.
///
/// # Panics
///
/// If `capacity` is `0` or greater than [`CAPACITY_MAX`].
///
/// # Examples
///
/// ```
/// use rill::ring::spsc;
///
/// let (mut producer, mut consumer) = spsc::channel::<u64>(3);
/// assert_eq!(producer.capacity(), 4);
/// assert_eq!(producer.try_push(7), Ok(()));
/// std::thread::spawn(move || assert_eq!(consumer.pop(), Some(7)))
///     .join()
///     .unwrap();
/// ```
///
/// Neither end may be shared between threads; move it instead:
///
/// ```compile_fail,E0277
/// fn assert_sync<S: Sync>() {}
/// assert_sync::<rill::ring::spsc::Consumer<u64>>();
/// ```
///
/// ```compile_fail,E0277
/// fn assert_sync<S: Sync>() {}
/// assert_sync::<rill::ring::spsc::Producer<u64>>();
/// ```
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    channel_starting_at(capacity, 0)
}

/// [`channel`], with both counters starting at `index_start` instead of `0`.
///
/// Only tests need a start other than `0`: it lets them drive the counters across
/// `usize::MAX` without pushing `2^64` items first.
fn channel_starting_at<T>(capacity: usize, index_start: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity >= 1,
        "spsc::channel: capacity must be at least 1 slot, got 0"
    );
    assert!(
        capacity <= CAPACITY_MAX,
        "spsc::channel: capacity must be at most CAPACITY_MAX ({CAPACITY_MAX}) slots, got {capacity}"
    );
    let capacity = capacity.next_power_of_two();

    // Pad the slots with a cache line's worth of unused slots on each side, and start the ring at
    // the first slot that begins a cache line if there is one: then no line holding an item is
    // shared with the allocator's neighbours, and a batch boundary at a multiple of
    // `LINE_BYTES / size_of::<T>()` is also a line boundary.
    let slot_bytes = std::mem::size_of::<Slot<T>>();
    let padding_slots = if slot_bytes == 0 {
        0
    } else {
        LINE_BYTES.div_ceil(slot_bytes)
    };
    let slots: Box<[Slot<T>]> = (0..capacity + 2 * padding_slots)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let address = slots.as_ptr().addr();
    let slot_first = (0..padding_slots)
        .find(|&slot| (address + slot * slot_bytes).is_multiple_of(LINE_BYTES))
        .unwrap_or(padding_slots);
    assert!(slot_first + capacity <= slots.len());

    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(index_start)),
        tail: CachePadded::new(AtomicUsize::new(index_start)),
        slots,
        slot_first,
        mask: capacity - 1,
        producer_dropped: AtomicBool::new(false),
        consumer_dropped: AtomicBool::new(false),
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail_staged: index_start,
        tail_published: index_start,
        head_cached: index_start,
        _not_sync: PhantomData,
    };
    let consumer = Consumer {
        shared,
        head: index_start,
        tail_cached: index_start,
        _not_sync: PhantomData,
    };
    (producer, consumer)
}

/// One slot of the ring: initialised exactly when its item is in `head..tail_staged`.
type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The state both ends point to. Dropped (with any items still inside) when both ends are gone.
struct Shared<T> {
    /// Number of items ever consumed, wrapping. Stored only by the consumer (`Release`), loaded by
    /// the producer (`Acquire`). Range: `tail - capacity <= head <= tail` (wrapping).
    head: CachePadded<AtomicUsize>,

    /// Number of items ever published, wrapping. Stored only by the producer (`Release`), loaded by
    /// the consumer (`Acquire`). Range: `head <= tail <= head + capacity` (wrapping).
    tail: CachePadded<AtomicUsize>,

    /// The items, in `slots[slot_first..slot_first + capacity]`; the slots around them are never
    /// touched and only keep other data off the items' cache lines. Never resized. `slots`,
    /// `slot_first` and `mask` are read-only after creation, so both ends read them without
    /// contention (they sit on their own cache line after the padded counters).
    slots: Box<[Slot<T>]>,

    /// The index in `slots` of the ring's first slot. Range: `0..=padding_slots`, where
    /// `padding_slots = ceil(LINE_BYTES / size_of::<Slot<T>>())` (0 for zero-sized items) and
    /// `slots.len() == capacity + 2 * padding_slots`.
    slot_first: usize,

    /// `capacity - 1`: maps an index to its slot. Range: `0..CAPACITY_MAX`, all low bits set.
    mask: usize,

    /// `true` once the [`Producer`] has been dropped, set after its final `tail` store
    /// (`Release`/`Acquire`). Never goes back to `false`.
    producer_dropped: AtomicBool,

    /// `true` once the [`Consumer`] has been dropped (`Release`/`Acquire`). Never goes back to
    /// `false`.
    consumer_dropped: AtomicBool,
}

// SAFETY: the ring moves each `T` from the producer's thread to the consumer's thread, which is
// exactly what `T: Send` permits. The slots are never accessed by both ends at once: a slot in
// `tail..head + capacity` is touched only by the producer, one in `head..tail` only by the
// consumer, and ownership of a slot changes hands only through the Release/Acquire pairs on
// `head` and `tail`. The producer never forms a reference to an item, and the consumer's `&T`
// from `peek` cannot reach another thread because `Consumer` is not `Sync`, so `T: Sync` is not
// needed.
unsafe impl<T: Send> Sync for Shared<T> {}

// SAFETY: `Shared` owns its items; sending it sends them, which `T: Send` permits.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    /// The slot that item number `index` occupies.
    #[inline]
    fn slot(&self, index: usize) -> &Slot<T> {
        &self.slots[self.slot_first + (index & self.mask)]
    }

    /// The number of slots, a power of two in `1..=CAPACITY_MAX`.
    #[inline]
    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both ends are gone, and the reference count's own Release/Acquire makes their last
        // stores visible here. The producer published its staged items before letting go, so the
        // initialised slots are exactly `head..tail`.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        assert!(tail.wrapping_sub(head) <= self.capacity());
        let mut index = head;
        while index != tail {
            self.slot(index).with_mut(|pointer| {
                // SAFETY: `index` is in `head..tail`, so the slot holds an initialised item that
                // nobody moved out (the consumer moves out only below `head`). We have `&mut self`,
                // so no other access exists, and `index` advances right after, so each item is
                // dropped once.
                unsafe { (*pointer).assume_init_drop() }
            });
            index = index.wrapping_add(1);
        }
    }
}

/// The writing end of a ring created by [`channel`].
///
/// Owned by exactly one thread at a time: `Send` when `T: Send`, never `Sync` or `Clone`.
pub struct Producer<T> {
    /// The ring, shared with the [`Consumer`].
    shared: Arc<Shared<T>>,

    /// The index the next [`stage`](Self::stage) writes. Range:
    /// `tail_published <= tail_staged <= head_cached + capacity` (wrapping).
    tail_staged: usize,

    /// The value this producer last stored to `shared.tail`, which only it stores, so it equals
    /// `shared.tail`. Range: `head_cached <= tail_published <= tail_staged` (wrapping).
    tail_published: usize,

    /// A copy of `shared.head` from an `Acquire` load (or the start), so a lower bound of it:
    /// slots below it are known free. Range: `head_cached <= head <= tail_published` (wrapping).
    head_cached: usize,

    /// Makes the producer `!Sync` while leaving it `Send`.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Producer<T> {
    /// Writes `value` into the next slot and publishes it, together with any items staged before.
    ///
    /// Returns the value back if the ring is full. Never blocks and never allocates.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), T> {
        self.stage(value)?;
        self.publish();
        Ok(())
    }

    /// Writes `value` into the next slot without making it visible to the consumer.
    ///
    /// Staged items become visible, in order, at the next [`publish`](Self::publish) or
    /// [`try_push`](Self::try_push), or when the producer is dropped. A staged item occupies its
    /// slot: it counts against [`slots_free`](Self::slots_free). Returns the value back if the ring
    /// is full; if everything is staged and nothing published, the ring stays full until
    /// `publish` lets the consumer drain it.
    #[inline]
    pub fn stage(&mut self, value: T) -> Result<(), T> {
        let capacity = self.shared.capacity();
        if self.tail_staged.wrapping_sub(self.head_cached) == capacity {
            self.head_cached = self.shared.head.load(Ordering::Acquire);
            if self.tail_staged.wrapping_sub(self.head_cached) == capacity {
                return Err(value);
            }
        }
        debug_assert!(self.tail_staged.wrapping_sub(self.head_cached) < capacity);
        self.shared.slot(self.tail_staged).with_mut(|pointer| {
            // SAFETY: `head_cached <= tail_staged < head_cached + capacity`, and `head_cached`
            // came from an `Acquire` load of `head` (or is the start), so the consumer has moved
            // out whatever this slot held before, and that read happens-before this write. The
            // consumer reads only `head..tail_published`, which excludes `tail_staged`, so nobody
            // else touches the slot now. It is uninitialised, so overwriting it leaks nothing.
            unsafe { (*pointer).write(value) };
        });
        self.tail_staged = self.tail_staged.wrapping_add(1);
        Ok(())
    }

    /// Makes every staged item visible to the consumer with one `Release` store.
    ///
    /// Does nothing (and touches no shared memory) when nothing is staged.
    #[inline]
    pub fn publish(&mut self) {
        if self.tail_published != self.tail_staged {
            debug_assert!(
                self.tail_staged.wrapping_sub(self.tail_published) <= self.shared.capacity()
            );
            self.shared.tail.store(self.tail_staged, Ordering::Release);
            self.tail_published = self.tail_staged;
        }
    }

    /// The number of items that can be staged or pushed right now without failing.
    ///
    /// Staged items count as occupied. The consumer may free slots concurrently, so this is a lower
    /// bound by the time it returns. Range: `0..=capacity`.
    pub fn slots_free(&self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        let used = self.tail_staged.wrapping_sub(head);
        debug_assert!(used <= self.shared.capacity());
        self.shared.capacity() - used
    }

    /// The number of slots in the ring: the requested capacity rounded up to a power of two.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// `true` once the [`Consumer`] has been dropped: nothing pushed from now on will be read.
    ///
    /// Pushing still works (the items are dropped with the ring), so a producer that cares checks
    /// this and stops.
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_dropped.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    /// Publishes any staged items, then tells the consumer the producer is gone.
    fn drop(&mut self) {
        self.publish();
        // Release: a consumer that sees the flag with Acquire also sees the final `tail`.
        self.shared.producer_dropped.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail_staged", &self.tail_staged)
            .field("tail_published", &self.tail_published)
            .field("head_cached", &self.head_cached)
            .finish_non_exhaustive()
    }
}

/// The reading end of a ring created by [`channel`].
///
/// Owned by exactly one thread at a time: `Send` when `T: Send`, never `Sync` or `Clone`.
pub struct Consumer<T> {
    /// The ring, shared with the [`Producer`].
    shared: Arc<Shared<T>>,

    /// The index of the next item to read. Equals `shared.head` except inside
    /// [`pop_batch`](Self::pop_batch), where it runs ahead until the single store at the end.
    /// Range: `head <= tail_cached` (wrapping).
    head: usize,

    /// A copy of `shared.tail` from an `Acquire` load (or the start), so a lower bound of it:
    /// items below it are known published. Range: `head <= tail_cached <= tail` (wrapping).
    tail_cached: usize,

    /// Makes the consumer `!Sync` while leaving it `Send`; [`peek`](Self::peek) relies on it.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Consumer<T> {
    /// Removes and returns the oldest published item, or `None` if there is none.
    ///
    /// Frees the slot at once with one `Release` store. Never blocks.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_cached {
            self.tail_cached = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.tail_cached {
                return None;
            }
        }
        debug_assert!(self.tail_cached.wrapping_sub(self.head) <= self.shared.capacity());
        let value = self.shared.slot(self.head).with(|pointer| {
            // SAFETY: `head < tail_cached`, and `tail_cached` came from an `Acquire` load of
            // `tail`, so the producer's write of this item happens-before this read. The producer
            // will not write the slot again until it sees `head` move past it, which happens only
            // after this read, and `head` advances right below, so the item is moved out once.
            unsafe { (*pointer).assume_init_read() }
        });
        self.head = self.head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Removes up to `max` items, oldest first, handing each to `f`, and returns how many it
    /// removed.
    ///
    /// All removed slots are freed with one `Release` store at the end, so the producer sees the
    /// room only after `f` has run for the whole batch. If `f` panics, the items already handed
    /// over are freed and the rest stay in the ring; nothing is dropped twice.
    #[inline]
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut available = self.tail_cached.wrapping_sub(self.head);
        if available < max {
            self.tail_cached = self.shared.tail.load(Ordering::Acquire);
            available = self.tail_cached.wrapping_sub(self.head);
        }
        debug_assert!(available <= self.shared.capacity());
        let count = available.min(max);
        if count == 0 {
            return 0;
        }
        // Everything the loop needs lives in locals, so the compiler need not reload it from the
        // shared allocation after each callback.
        let shared: &Shared<T> = &self.shared;
        let slots: &[Slot<T>] = &shared.slots[shared.slot_first..];
        let mask = shared.mask;
        let head_start = self.head;
        let head_end = head_start.wrapping_add(count);
        let mut release = ReleaseOnDrop {
            head_shared: &shared.head,
            head_consumer: &mut self.head,
            head: head_start,
        };
        while release.head != head_end {
            let value = slots[release.head & mask].with(|pointer| {
                // SAFETY: `head_start <= head < head_end <= tail_cached` (wrapping), and
                // `tail_cached` came from an `Acquire` load of `tail`, so the item is initialised
                // and its write happens-before this read. `shared.head` has not moved past it yet,
                // so the producer keeps off the slot, and `head` advances right below, so the
                // item is moved out once (also if `f` panics: the guard then stores the advanced
                // `head`).
                unsafe { (*pointer).assume_init_read() }
            });
            release.head = release.head.wrapping_add(1);
            f(value);
        }
        drop(release);
        count
    }

    /// The oldest published item, without removing it, or `None` if there is none.
    ///
    /// The item stays put while the reference lives: removing it needs `&mut self`.
    pub fn peek(&self) -> Option<&T> {
        let tail = if self.head == self.tail_cached {
            self.shared.tail.load(Ordering::Acquire)
        } else {
            self.tail_cached
        };
        if tail == self.head {
            return None;
        }
        let value = self.shared.slot(self.head).with(|pointer| {
            // SAFETY: `head < tail`, where `tail` came from an `Acquire` load, so the item is
            // initialised and visible. It stays initialised and unwritten until `shared.head`
            // moves past it, which needs `&mut self`, which the returned borrow of `self` rules
            // out. `Consumer` is not `Sync`, so the `&T` cannot reach another thread through it.
            unsafe { (*pointer).assume_init_ref() }
        });
        Some(value)
    }

    /// The number of published items waiting to be read. The producer may publish more
    /// concurrently, so this is a lower bound by the time it returns. Range: `0..=capacity`.
    pub fn len(&self) -> usize {
        let tail = self.shared.tail.load(Ordering::Acquire);
        let len = tail.wrapping_sub(self.head);
        debug_assert!(len <= self.shared.capacity());
        len
    }

    /// `true` if no published item is waiting. Like [`len`](Self::len), it may be stale by the
    /// time it returns, but only towards `true`.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail_cached && self.len() == 0
    }

    /// The number of slots in the ring: the requested capacity rounded up to a power of two.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// `true` once the [`Producer`] has been dropped.
    ///
    /// When it returns `true`, every item the producer ever published (including the items it had
    /// staged, which its drop published) is already visible, so popping until `None` drains the
    /// ring completely. Check it after `pop` returns `None`, then pop once more until `None`.
    pub fn is_abandoned(&self) -> bool {
        self.shared.producer_dropped.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    /// Tells the producer the consumer is gone. Items left inside are dropped with the ring.
    fn drop(&mut self) {
        self.shared.consumer_dropped.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("tail_cached", &self.tail_cached)
            .finish_non_exhaustive()
    }
}

/// The end of a [`Consumer::pop_batch`]: when dropped, stores how far the batch got to the
/// consumer's `head` and, with the batch's single `Release` store, to `shared.head`. Being a drop
/// guard, it also runs if the callback panics, so items already moved out are never read again.
struct ReleaseOnDrop<'batch> {
    /// `shared.head`, stored once, here.
    head_shared: &'batch AtomicUsize,
    /// The consumer's own copy of `head`, brought up to date here.
    head_consumer: &'batch mut usize,
    /// The index of the next item the batch would read. Range:
    /// `head_start..=head_end` (wrapping).
    head: usize,
}

impl Drop for ReleaseOnDrop<'_> {
    #[inline]
    fn drop(&mut self) {
        *self.head_consumer = self.head;
        self.head_shared.store(self.head, Ordering::Release);
    }
}

/// The synchronisation primitives the ring is written on: `std`'s normally, `loom`'s under
/// `--cfg loom` so that `engine/tests/ring_loom.rs` can explore every interleaving.
///
/// `UnsafeCell` follows loom's closure-based API (`with`, `with_mut`) in both builds, so the ring
/// code is the same either way and loom can check every access to a slot.
#[cfg(not(loom))]
mod sync {
    pub(super) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(super) use std::sync::Arc;

    /// `std::cell::UnsafeCell` with loom's access API; compiles to a plain pointer access.
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Calls `f` with a pointer for reading the contents.
        #[inline(always)]
        pub(super) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Calls `f` with a pointer for writing the contents.
        #[inline(always)]
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(loom)]
mod sync {
    pub(super) use loom::cell::UnsafeCell;
    pub(super) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(super) use loom::sync::Arc;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::panic::{self, AssertUnwindSafe};
    use std::rc::Rc;

    /// Counts how many times values of this type were dropped.
    struct DropCounter {
        drops: Rc<Cell<usize>>,
    }

    impl Drop for DropCounter {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    fn counter(drops: &Rc<Cell<usize>>) -> DropCounter {
        DropCounter {
            drops: Rc::clone(drops),
        }
    }

    #[test]
    fn items_come_out_in_the_order_they_were_pushed() {
        let (mut producer, mut consumer) = channel(8);
        for value in 0..8_u32 {
            assert_eq!(producer.try_push(value), Ok(()));
        }
        for value in 0..8_u32 {
            assert_eq!(consumer.pop(), Some(value));
        }
        assert_eq!(consumer.pop(), None);
    }

    #[test]
    fn a_full_ring_hands_the_value_back_and_takes_it_after_a_pop() {
        let (mut producer, mut consumer) = channel(2);
        assert_eq!(producer.try_push("a"), Ok(()));
        assert_eq!(producer.try_push("b"), Ok(()));
        assert_eq!(producer.slots_free(), 0);
        assert_eq!(producer.try_push("c"), Err("c"));
        assert_eq!(producer.stage("c"), Err("c"));
        assert_eq!(consumer.pop(), Some("a"));
        assert_eq!(producer.slots_free(), 1);
        assert_eq!(producer.try_push("c"), Ok(()));
        assert_eq!(consumer.pop(), Some("b"));
        assert_eq!(consumer.pop(), Some("c"));
    }

    #[test]
    fn an_empty_ring_pops_and_peeks_nothing() {
        let (_producer, mut consumer) = channel::<u8>(4);
        assert_eq!(consumer.pop(), None);
        assert_eq!(consumer.peek(), None);
        assert!(consumer.is_empty());
        assert_eq!(consumer.len(), 0);
        assert_eq!(consumer.pop_batch(10, |_| unreachable!()), 0);
    }

    #[test]
    fn capacity_is_rounded_up_to_a_power_of_two() {
        for (requested, expected) in [(1, 1), (2, 2), (3, 4), (5, 8), (64, 64), (65, 128)] {
            let (producer, consumer) = channel::<u8>(requested);
            assert_eq!(producer.capacity(), expected);
            assert_eq!(consumer.capacity(), expected);
            assert_eq!(producer.slots_free(), expected);
        }
        let (producer, _consumer) = channel::<u8>(CAPACITY_MAX);
        assert_eq!(producer.capacity(), CAPACITY_MAX);
    }

    #[test]
    #[should_panic(expected = "capacity must be at least 1 slot")]
    fn a_capacity_of_zero_is_refused() {
        let _ = channel::<u8>(0);
    }

    #[test]
    #[should_panic(expected = "capacity must be at most CAPACITY_MAX")]
    fn a_capacity_above_the_maximum_is_refused() {
        let _ = channel::<u8>(CAPACITY_MAX + 1);
    }

    #[test]
    fn a_capacity_of_one_alternates_between_full_and_empty() {
        let (mut producer, mut consumer) = channel(1);
        for value in 0..100_u32 {
            assert_eq!(producer.try_push(value), Ok(()));
            assert_eq!(producer.try_push(value), Err(value));
            assert_eq!(consumer.pop(), Some(value));
            assert_eq!(consumer.pop(), None);
        }
    }

    #[test]
    fn order_survives_many_laps_around_the_slots() {
        let (mut producer, mut consumer) = channel(4);
        let mut next_in = 0_u64;
        let mut next_out = 0_u64;
        // Uneven push and pop counts move the fill level around so that every slot boundary is
        // crossed with every fill level.
        for round in 0..1_000_u64 {
            for _ in 0..(round % 5) {
                if producer.try_push(next_in).is_ok() {
                    next_in += 1;
                }
            }
            for _ in 0..(round % 3) {
                if let Some(value) = consumer.pop() {
                    assert_eq!(value, next_out);
                    next_out += 1;
                }
            }
            assert_eq!(consumer.len() as u64, next_in - next_out);
        }
        while let Some(value) = consumer.pop() {
            assert_eq!(value, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(next_in > 1_000);
    }

    #[test]
    fn order_survives_the_counters_wrapping_around_usize() {
        let (mut producer, mut consumer) = channel_starting_at(4, usize::MAX - 5);
        let mut next_out = 0_u32;
        for value in 0..64_u32 {
            while let Err(refused) = producer.try_push(value) {
                assert_eq!(refused, value);
                assert_eq!(consumer.pop(), Some(next_out));
                next_out += 1;
            }
        }
        assert_eq!(consumer.len(), 4);
        assert_eq!(
            consumer.pop_batch(usize::MAX, |value| {
                assert_eq!(value, next_out);
                next_out += 1;
            }),
            4
        );
        assert_eq!(next_out, 64);
        assert!(consumer.is_empty());
    }

    #[test]
    fn items_left_inside_are_dropped_exactly_once_when_both_ends_are_gone() {
        let drops = Rc::new(Cell::new(0));
        let (mut producer, mut consumer) = channel(4);
        for _ in 0..4 {
            assert!(producer.try_push(counter(&drops)).is_ok());
        }
        let refused = producer.try_push(counter(&drops)).err().unwrap();
        drop(refused);
        assert_eq!(drops.get(), 1);
        drop(consumer.pop());
        assert_eq!(drops.get(), 2);
        drop(consumer);
        assert_eq!(drops.get(), 2, "the producer still holds the ring");
        drop(producer);
        assert_eq!(drops.get(), 5);
    }

    #[test]
    fn items_left_inside_after_wrapping_are_dropped_exactly_once() {
        let drops = Rc::new(Cell::new(0));
        let (mut producer, mut consumer) = channel(4);
        for _ in 0..3 {
            assert!(producer.try_push(counter(&drops)).is_ok());
        }
        for _ in 0..3 {
            drop(consumer.pop());
        }
        // head = 3, so the next three items occupy slots 3, 0 and 1.
        for _ in 0..3 {
            assert!(producer.try_push(counter(&drops)).is_ok());
        }
        drop(producer);
        drop(consumer);
        assert_eq!(drops.get(), 6);
    }

    #[test]
    fn staged_items_are_invisible_until_published() {
        let (mut producer, mut consumer) = channel(4);
        assert_eq!(producer.stage(1), Ok(()));
        assert_eq!(producer.stage(2), Ok(()));
        assert_eq!(producer.slots_free(), 2, "staged items occupy their slots");
        assert_eq!(consumer.pop(), None);
        assert_eq!(consumer.peek(), None);
        assert_eq!(consumer.len(), 0);
        producer.publish();
        assert_eq!(consumer.len(), 2);
        assert_eq!(consumer.peek(), Some(&1));
        assert_eq!(consumer.pop(), Some(1));
        assert_eq!(consumer.pop(), Some(2));
        assert_eq!(consumer.pop(), None);
    }

    #[test]
    fn try_push_also_publishes_what_was_staged_before() {
        let (mut producer, mut consumer) = channel(4);
        assert_eq!(producer.stage(1), Ok(()));
        assert_eq!(producer.try_push(2), Ok(()));
        let mut seen = Vec::new();
        assert_eq!(consumer.pop_batch(4, |value| seen.push(value)), 2);
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn a_ring_full_of_staged_items_refuses_more_until_published_and_drained() {
        let (mut producer, mut consumer) = channel(2);
        assert_eq!(producer.stage(1), Ok(()));
        assert_eq!(producer.stage(2), Ok(()));
        assert_eq!(producer.stage(3), Err(3));
        producer.publish();
        assert_eq!(consumer.pop(), Some(1));
        assert_eq!(producer.stage(3), Ok(()));
        producer.publish();
        assert_eq!(consumer.pop(), Some(2));
        assert_eq!(consumer.pop(), Some(3));
    }

    #[test]
    fn dropping_the_producer_publishes_its_staged_items() {
        let drops = Rc::new(Cell::new(0));
        let (mut producer, mut consumer) = channel(4);
        assert!(producer.stage(counter(&drops)).is_ok());
        assert!(producer.stage(counter(&drops)).is_ok());
        assert!(!consumer.is_abandoned());
        drop(producer);
        assert!(consumer.is_abandoned());
        assert_eq!(consumer.len(), 2);
        drop(consumer.pop().unwrap());
        assert_eq!(drops.get(), 1);
        drop(consumer);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn the_producer_learns_when_the_consumer_is_gone() {
        let (mut producer, consumer) = channel(2);
        assert!(!producer.is_abandoned());
        drop(consumer);
        assert!(producer.is_abandoned());
        assert_eq!(
            producer.try_push(1),
            Ok(()),
            "pushing into an abandoned ring still works"
        );
    }

    #[test]
    fn pop_batch_takes_at_most_max_in_order() {
        let (mut producer, mut consumer) = channel(8);
        for value in 0..6 {
            assert_eq!(producer.try_push(value), Ok(()));
        }
        let mut seen = Vec::new();
        assert_eq!(consumer.pop_batch(0, |value| seen.push(value)), 0);
        assert_eq!(consumer.pop_batch(4, |value| seen.push(value)), 4);
        assert_eq!(seen, [0, 1, 2, 3]);
        assert_eq!(consumer.pop_batch(4, |value| seen.push(value)), 2);
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        assert_eq!(
            producer.slots_free(),
            8,
            "the batch freed every slot it read"
        );
    }

    #[test]
    fn pop_batch_frees_the_slots_only_at_the_end() {
        let (mut producer, mut consumer) = channel(2);
        assert_eq!(producer.try_push(1), Ok(()));
        assert_eq!(producer.try_push(2), Ok(()));
        let producer_ref = &producer;
        let mut slots_free_seen = Vec::new();
        consumer.pop_batch(2, |_| slots_free_seen.push(producer_ref.slots_free()));
        assert_eq!(slots_free_seen, [0, 0]);
        assert_eq!(producer.slots_free(), 2);
    }

    #[test]
    fn a_panic_inside_pop_batch_drops_nothing_twice_and_keeps_the_rest() {
        let drops = Rc::new(Cell::new(0));
        let (mut producer, mut consumer) = channel(4);
        for _ in 0..4 {
            assert!(producer.try_push(counter(&drops)).is_ok());
        }
        let mut calls = 0;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            consumer.pop_batch(4, |item| {
                calls += 1;
                if calls == 2 {
                    panic!("callback fails on the second item");
                }
                drop(item);
            })
        }));
        assert!(result.is_err());
        assert_eq!(
            drops.get(),
            2,
            "both items handed to the callback were dropped"
        );
        assert_eq!(consumer.len(), 2);
        assert_eq!(producer.slots_free(), 2, "the guard freed the two slots");
        drop(producer);
        drop(consumer);
        assert_eq!(drops.get(), 4);
    }

    #[test]
    fn peek_shows_the_oldest_item_without_removing_it() {
        let (mut producer, mut consumer) = channel(4);
        assert_eq!(producer.try_push(String::from("first")), Ok(()));
        assert_eq!(producer.try_push(String::from("second")), Ok(()));
        assert_eq!(consumer.peek().map(String::as_str), Some("first"));
        assert_eq!(consumer.peek().map(String::as_str), Some("first"));
        assert_eq!(consumer.pop().as_deref(), Some("first"));
        assert_eq!(consumer.peek().map(String::as_str), Some("second"));
    }

    #[test]
    fn items_never_share_a_cache_line_with_other_data() {
        fn check<T>(capacity: usize) {
            let (producer, _consumer) = channel::<T>(capacity);
            let shared = &*producer.shared;
            let slot_bytes = std::mem::size_of::<Slot<T>>();
            let before_bytes = shared.slot_first * slot_bytes;
            let after_bytes = (shared.slots.len() - shared.slot_first - capacity) * slot_bytes;
            let first_address = (shared.slot(0) as *const Slot<T>).addr();
            assert!(
                first_address.is_multiple_of(LINE_BYTES) || before_bytes >= LINE_BYTES,
                "the first item's line may hold someone else's data"
            );
            assert!(
                after_bytes >= LINE_BYTES,
                "the last item's line may hold someone else's data"
            );
        }
        check::<u64>(64);
        check::<[u64; 8]>(16);
        check::<[u8; 24]>(8);
        check::<u8>(1);
        let (producer, _consumer) = channel::<u64>(64);
        let first_address = (producer.shared.slot(0) as *const Slot<u64>).addr();
        assert_eq!(
            first_address % LINE_BYTES,
            0,
            "8-byte items start on a line boundary"
        );
    }

    #[test]
    fn zero_sized_items_are_counted() {
        let (mut producer, mut consumer) = channel(2);
        assert_eq!(producer.try_push(()), Ok(()));
        assert_eq!(producer.try_push(()), Ok(()));
        assert_eq!(producer.try_push(()), Err(()));
        assert_eq!(consumer.len(), 2);
        assert_eq!(consumer.pop(), Some(()));
    }

    #[test]
    fn both_ends_can_move_to_other_threads() {
        fn assert_send<S: Send>() {}
        assert_send::<Producer<Box<u8>>>();
        assert_send::<Consumer<Box<u8>>>();
        let (mut producer, mut consumer) = channel(16);
        let writer = std::thread::spawn(move || {
            for value in 0..10_000_u32 {
                let mut item = value;
                while let Err(refused) = producer.try_push(item) {
                    item = refused;
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = 0_u32;
        while expected < 10_000 {
            match consumer.pop() {
                Some(value) => {
                    assert_eq!(value, expected);
                    expected += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        writer.join().unwrap();
        assert!(consumer.is_abandoned());
        assert_eq!(consumer.pop(), None);
    }

    #[test]
    fn debug_output_names_the_indices() {
        let (producer, consumer) = channel::<u8>(2);
        let text = format!("{producer:?} {consumer:?}");
        assert!(text.contains("tail_staged"), "{text}");
        assert!(text.contains("tail_cached"), "{text}");
    }
}
