//! Newtypes that stop swaps: each matches its Kafka wire width.

use std::fmt;

/// A record's position in its partition. Offsets start at 0 and only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

/// A partition of a topic, `0..partitions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(pub i32);

/// A shard: one pinned thread, `0..EngineConfig::shards`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u16);

/// A producer's identity for idempotence (Kafka's producer id). -1 means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

/// A producer's epoch (Kafka's producer epoch). -1 means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub i16);

/// A producer's per-partition record sequence (Kafka's base sequence). -1 means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(pub i32);

impl ProducerId {
    pub const NONE: ProducerId = ProducerId(-1);
}
impl Epoch {
    pub const NONE: Epoch = Epoch(-1);
}
impl Sequence {
    pub const NONE: Sequence = Sequence(-1);
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a new subscription starts reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    /// The first record still stored.
    Earliest,
    /// The next record appended after the subscription is made.
    Latest,
    /// This offset; clamped to the stored range.
    Offset(Offset),
    /// The first record whose timestamp is at or after this many milliseconds since the
    /// Unix epoch; the end of the log when there is none.
    TimestampMs(i64),
}
