//! One error enum per operation. The binaries wrap these in `anyhow` at their edges.

use std::io;
use std::path::PathBuf;

/// Why [`crate::Engine::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory {path} is in use by another process (lock file {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot start shard {shard}: {reason}")]
    Shard { shard: usize, reason: String },
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// Why a topic could not be created or found.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: use 1 to 249 of [a-zA-Z0-9._-], not \".\" or \"..\"")]
    InvalidName(String),
    #[error("a topic needs 1 to {max} partitions, got {got}")]
    InvalidPartitions { got: u32, max: u32 },
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    #[error("unknown topic {0:?}")]
    Unknown(String),
    #[error("topic {topic:?}: {reason}")]
    Storage { topic: String, reason: String },
    #[error("the engine is stopped")]
    Stopped,
}

/// Why a record was not appended. Nothing of a failed record is visible to readers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("partition {partition} does not exist (topic has {partitions})")]
    UnknownPartition { partition: i32, partitions: u32 },
    #[error("record of {bytes} bytes is larger than the batch limit of {max} bytes")]
    RecordTooLarge { bytes: usize, max: usize },
    #[error("partition {partition}: storage failed: {cause}")]
    Storage { partition: i32, cause: String },
    #[error("the engine is stopped")]
    Stopped,
    #[error("producer {producer} is fenced: a newer epoch {current} exists")]
    Fenced { producer: i64, current: i16 },
    #[error("partition {partition}: sequence {sequence} is out of order, expected {expected}")]
    OutOfOrderSequence {
        partition: i32,
        sequence: i32,
        expected: i32,
    },
    #[error("producer {producer} is unknown here (its state expired or was evicted); start again at sequence 0")]
    UnknownProducerId { producer: i64 },
    #[error("partition {partition}: the producer table is full ({max} producers)")]
    ProducerTableFull { partition: i32, max: usize },
}

/// Why a non-blocking send did not queue the record.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// The ring to the owning shard is full or too many records await acks: the caller
    /// should collect acks (or wait) and retry. This is the backpressure signal.
    #[error("backpressure: too many records in flight to the owning shard")]
    Full(crate::client::Record),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("partition {partition} does not exist (topic has {partitions})")]
    UnknownPartition { partition: i32, partitions: u32 },
    #[error("the engine is stopped")]
    Stopped,
}
