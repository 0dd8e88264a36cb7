//! Lock-free rings: the only way two shards, or a shard and a client thread, hand work to each
//! other.
//!
//! # Role
//!
//! Rill runs one event loop per core and shares no mutable state between them. Every message that
//! crosses a core boundary (a produce request routed to the owning shard, an acknowledgement, a
//! batch for a consumer) travels through a bounded single-producer single-consumer ring from
//! [`spsc`]. A mesh of such rings, one per ordered pair of shards, is built on top of it; the ring
//! itself knows nothing about shards.
//!
//! # Why SPSC and not MPSC
//!
//! With exactly one writer and one reader, each index has exactly one thread that stores to it, so
//! a push or a pop is one plain store with `Release` ordering and no read-modify-write: no
//! compare-and-swap loop, no contention, and a cost that does not grow with the number of cores.
//! Many-to-one traffic is expressed as many rings polled by one reader, which also gives the reader
//! fair, explicit control over whom it serves first. The price is memory: `shards²` rings.
//!
//! # Invariants shared by every ring here
//!
//! - Bounded: the capacity is fixed at creation (at most [`spsc::CAPACITY_MAX`] slots) and no
//!   memory is allocated afterwards. A full ring refuses the item and hands it back; it never
//!   blocks and never overwrites. Backpressure is the caller's decision.
//! - Each handle ([`spsc::Producer`], [`spsc::Consumer`]) is `Send` but neither `Sync` nor `Clone`:
//!   it is owned by one thread at a time, which is what makes the single-writer argument hold.
//! - Items are delivered exactly once, in the order they were published. Items still inside when
//!   both handles are gone are dropped exactly once.
//!
//! # Testing
//!
//! Unit tests live next to the code; `engine/tests/ring_stress.rs` moves millions of items between
//! two real threads; `engine/tests/ring_loom.rs` explores every interleaving of small scenarios
//! with `loom` (build with `RUSTFLAGS="--cfg loom"`), which is why the ring takes its atomics from
//! a small `sync` shim instead of from `std` directly.

pub mod spsc;
