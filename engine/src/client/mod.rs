//! The embedded API: [`Engine`], [`Topic`], [`Producer`] and [`Consumer`].
//!
//! Threading: an [`Engine`] may be shared between threads (`&Engine` is enough to create
//! topics and handles). A [`Producer`] or [`Consumer`] is `Send` but used by one thread at a
//! time: each owns one SPSC ring pair per shard (the "producer-handle/shard pair" layout), so
//! the data path has one writer and one reader per ring and takes no lock.
//!
//! Partition ownership: partition `p` of topic `t` lives on shard
//! `(fnv1a(t) + p) mod shards`; only that shard touches its files and state.

mod consumer;
mod engine;
mod producer;

pub use consumer::{Consumer, ConsumerRecord, SubscriptionId};
pub use engine::{Engine, Topic};
pub use producer::{Producer, Record, SendOutcome, Ticket};
