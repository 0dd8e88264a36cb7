//! Limits and settings. Every queue, ring, batch and table has a `*_max` here, and the
//! relations between limits are checked at compile time.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::io::StorageChoice;

/// What an acknowledgement promises. The ack is sent only once the promise holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Ack when the write has completed into the operating system's page cache.
    ///
    /// Survives a crash of the process (the kernel still holds the data and writes it back).
    /// Does not survive power loss or a kernel crash: acknowledged records written since the
    /// kernel's last writeback can be lost; recovery then truncates at the first torn batch.
    Buffer,
    /// Like [`Durability::Buffer`], plus a background `fdatasync` of every written partition at
    /// this interval. Survives a process crash; after power loss, at most the last interval of
    /// acknowledged records (plus the sync in progress) can be lost.
    Interval(Duration),
    /// Ack only after `fdatasync` of the partition's segment has completed. One `fdatasync`
    /// covers every batch written to that segment in the same shard loop turn (group commit).
    /// Survives process crash and power loss (given a disk that honours flushes).
    Sync,
}

impl Durability {
    /// Parses `buffer`, `sync` or `interval:MS`.
    pub fn parse(text: &str) -> Result<Durability, String> {
        match text {
            "buffer" => Ok(Durability::Buffer),
            "sync" => Ok(Durability::Sync),
            _ => match text.strip_prefix("interval:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Durability::Interval(Duration::from_millis(ms))),
                    _ => Err(format!(
                        "invalid durability {text:?}: interval needs a whole number of milliseconds > 0, e.g. interval:100"
                    )),
                },
                None => Err(format!(
                    "invalid durability {text:?}: expected buffer, sync or interval:MS"
                )),
            },
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Buffer => f.write_str("buffer"),
            Durability::Sync => f.write_str("sync"),
            Durability::Interval(every) => write!(f, "interval:{}", every.as_millis()),
        }
    }
}

/// Largest stored batch payload, and so the largest single record.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Largest number of records in one stored batch.
pub const BATCH_RECORDS_MAX: usize = 65_536;
/// Largest number of partitions a topic may have.
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;
/// Largest number of shards.
pub const SHARDS_MAX: usize = 256;
/// Smallest allowed `segment_bytes_max`. A single write larger than the limit still goes into
/// one (fresh) segment, so a segment holds at most `segment_bytes_max + turn_partition_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Settings of one [`crate::Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Directory holding the topics. Created when missing; locked while the engine runs.
    pub data_dir: PathBuf,
    /// Number of shard threads. Defaults to the number of available cores.
    pub shards: usize,
    /// Pin each shard to a core (`core_affinity`). Off only for tests on crowded machines.
    pub pin_shards: bool,
    /// What an acknowledgement promises.
    pub durability: Durability,
    /// A segment is rolled once it would grow past this size.
    pub segment_bytes_max: u64,
    /// One index entry is written each time this many bytes were appended to a segment.
    pub index_interval_bytes: u32,
    /// Capacity of each producer-to-shard ring, in records.
    pub producer_ring_records_max: usize,
    /// Capacity of each shard-to-consumer ring, in deliveries (each holds one or more
    /// stored batches).
    pub consumer_ring_deliveries_max: usize,
    /// Most bytes a shard appends to one partition in one loop turn.
    pub turn_partition_bytes_max: usize,
    /// Most bytes one catch-up delivery to a lagging consumer carries.
    pub catch_up_delivery_bytes_max: usize,
    /// Entries of each shard's io_uring submission queue.
    pub io_uring_entries: u32,
    /// Most idempotent producers whose state one partition keeps. A new producer past this
    /// is refused with `SendError::ProducerTableFull`; state of known producers is never
    /// dropped to make room (so no acknowledged producer silently loses its deduplication).
    pub producers_per_partition_max: usize,
    /// How long an idle shard polls its rings before sleeping on its io_uring. Zero by
    /// default: a spinning shard takes the core from producer and consumer threads unless
    /// each shard has a core to itself (e.g. `isolcpus`), where a few tens of µs save the
    /// wake-up on the next record.
    pub idle_spin: Duration,
    /// The storage backend of the shards: io_uring with a blocking fallback by default;
    /// blocking file I/O; or a simulated in-memory disk (tests).
    pub storage: StorageChoice,
}

impl EngineConfig {
    /// Defaults for a data directory: one shard per available core, `Buffer` durability.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(SHARDS_MAX),
            pin_shards: true,
            durability: Durability::Buffer,
            segment_bytes_max: 1 << 30,
            index_interval_bytes: 4096,
            producer_ring_records_max: 4096,
            consumer_ring_deliveries_max: 1024,
            turn_partition_bytes_max: 8 << 20,
            catch_up_delivery_bytes_max: 1 << 20,
            io_uring_entries: 256,
            idle_spin: Duration::ZERO,
            producers_per_partition_max: 10_000,
            storage: StorageChoice::Auto,
        }
    }

    /// Checks the relations between settings; the engine refuses to open otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return Err(format!(
                "shards must be in 1..={SHARDS_MAX}, got {}",
                self.shards
            ));
        }
        if self.segment_bytes_max < SEGMENT_BYTES_MIN {
            return Err(format!(
                "segment_bytes_max must be at least {SEGMENT_BYTES_MIN}, got {}",
                self.segment_bytes_max
            ));
        }
        if self.segment_bytes_max > u32::MAX as u64 {
            return Err("segment_bytes_max must fit in 32 bits (index positions)".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be > 0".into());
        }
        if self.producer_ring_records_max == 0 || self.consumer_ring_deliveries_max < 2 {
            return Err("ring capacities must be >= 1 (producer) and >= 2 (consumer)".into());
        }
        if self.turn_partition_bytes_max < BATCH_BYTES_MAX {
            return Err("turn_partition_bytes_max must hold at least one largest batch".into());
        }
        if self.io_uring_entries < 8 {
            return Err("io_uring_entries must be >= 8".into());
        }
        Ok(())
    }
}

const _: () = assert!(BATCH_RECORDS_MAX <= i32::MAX as usize);
const _: () = assert!(BATCH_BYTES_MAX < u32::MAX as usize / 2);
