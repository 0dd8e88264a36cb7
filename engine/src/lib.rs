//! Rill: a partitioned, append-only, replayable log built for latency.
//!
//! The crate is laid out along the path of a record (see `../DESIGN.md`):
//! `config`, `types` and `error` at the bottom; `ring` (lock-free SPSC rings);
//! `io` (the only code that touches files); `record` (the stored batch format);
//! `log` (one partition's segments); `shard` (one core's event loop); `client`
//! (the embedded API: [`Engine`], [`Producer`], [`Consumer`]).

pub mod client;
pub mod config;
pub mod error;
pub mod io;
pub mod log;
pub mod partitioner;
pub mod producer;
pub mod record;
pub mod ring;
pub mod shard;
pub mod types;

pub use client::{Consumer, ConsumerRecord, Engine, Producer, SendOutcome, Ticket, Topic};
pub use config::{Durability, EngineConfig};
pub use types::{Offset, PartitionId, StartPosition};
