//! Opening a data directory, creating topics, and starting and stopping the shards.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::bounded;

use super::{Consumer, Producer};
use crate::config::{EngineConfig, TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use crate::error::{OpenError, TopicError};
use crate::shard::messages::Control;
use crate::shard::{self, ShardHandle};
use crate::types::{Epoch, PartitionId, ProducerId, ShardId};

const TOPIC_META_FILE: &str = "topic.meta";
const LOCK_FILE: &str = ".lock";
const PRODUCER_IDS_FILE: &str = "producer-ids";

/// Where a partition lives: its shard and its slot in that shard's partition table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub shard: ShardId,
    pub slot: u32,
}

#[derive(Debug)]
pub(crate) struct TopicInner {
    pub name: Arc<str>,
    pub routes: Vec<Route>,
}

/// A topic: its name and where each of its partitions lives. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Topic {
    pub(crate) inner: Arc<TopicInner>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn partitions(&self) -> u32 {
        self.inner.routes.len() as u32
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: EngineConfig,
    pub shards: Vec<ShardHandle>,
    /// Control plane only: topic creation and lookup, never touched per record.
    topics: Mutex<HashMap<String, Topic>>,
    next_consumer: std::sync::atomic::AtomicU64,
    /// The next idempotent producer id; its successor is synced to disk before an id is used.
    next_producer_id: Mutex<i64>,
}

impl Shared {
    pub fn new_consumer_id(&self) -> u64 {
        self.next_consumer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// An embedded Rill engine on one data directory.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    /// Held (locked) while the engine runs; released when the engine is dropped.
    _lock: File,
}

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let valid = !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(TopicError::InvalidName(name.to_string()))
    }
}

/// FNV-1a of the topic name: spreads topics' partition 0 over shards, stable across runs.
fn topic_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shard that owns partition `partition` of `topic`.
pub fn shard_for(topic: &str, partition: u32, shards: usize) -> ShardId {
    ShardId(((topic_hash(topic) + partition as u64) % shards as u64) as u16)
}

impl Engine {
    /// Opens (creating when missing) the data directory, takes its lock, starts one pinned
    /// shard per configured core and recovers every topic found.
    pub fn open(config: EngineConfig) -> Result<Engine, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&config.data_dir).map_err(io_error(&config.data_dir))?;
        let lock_path = config.data_dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: config.data_dir.clone(),
                    lock: lock_path,
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                })
            }
        }
        let ids_path = config.data_dir.join(PRODUCER_IDS_FILE);
        let next_producer_id = match std::fs::read_to_string(&ids_path) {
            Ok(text) => text
                .trim()
                .strip_prefix("next=")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| OpenError::Topic {
                    topic: String::new(),
                    reason: format!("{} does not say next=N", ids_path.display()),
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(OpenError::Io {
                    path: ids_path,
                    source,
                })
            }
        };
        // The core list is read once, before any shard is pinned.
        let cores = if config.pin_shards {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut shards = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let core = if cores.is_empty() {
                None
            } else {
                Some(cores[index % cores.len()])
            };
            let handle =
                shard::spawn(ShardId(index as u16), config.clone(), core).map_err(|error| {
                    OpenError::Shard {
                        shard: index,
                        reason: error.to_string(),
                    }
                })?;
            shards.push(handle);
        }
        let shared = Arc::new(Shared {
            config,
            shards,
            topics: Mutex::new(HashMap::new()),
            next_consumer: std::sync::atomic::AtomicU64::new(0),
            next_producer_id: Mutex::new(next_producer_id),
        });
        let engine = Engine {
            shared,
            _lock: lock,
        };
        engine.recover_topics()?;
        Ok(engine)
    }

    fn recover_topics(&self) -> Result<(), OpenError> {
        let data_dir = &self.shared.config.data_dir;
        let entries = std::fs::read_dir(data_dir).map_err(|source| OpenError::Io {
            path: data_dir.clone(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let meta = entry.path().join(TOPIC_META_FILE);
            if meta.is_file() {
                names.push((entry.file_name().to_string_lossy().into_owned(), meta));
            }
        }
        names.sort();
        for (name, meta) in names {
            let text = std::fs::read_to_string(&meta).map_err(|source| OpenError::Io {
                path: meta.clone(),
                source,
            })?;
            let partitions = text
                .lines()
                .find_map(|line| line.strip_prefix("partitions="))
                .and_then(|count| count.trim().parse::<u32>().ok())
                .filter(|count| (1..=TOPIC_PARTITIONS_MAX).contains(count))
                .ok_or_else(|| OpenError::Topic {
                    topic: name.clone(),
                    reason: format!("{} does not say partitions=N", meta.display()),
                })?;
            let topic =
                self.open_partitions(&name, partitions)
                    .map_err(|reason| OpenError::Topic {
                        topic: name.clone(),
                        reason,
                    })?;
            self.shared
                .topics
                .lock()
                .expect("topic table")
                .insert(name, topic);
        }
        Ok(())
    }

    fn topic_directory(&self, name: &str) -> PathBuf {
        self.shared.config.data_dir.join(name)
    }

    /// Asks each owning shard to open its partitions; returns the routes.
    fn open_partitions(&self, name: &str, partitions: u32) -> Result<Topic, String> {
        let name: Arc<str> = Arc::from(name);
        let directory = self.topic_directory(&name);
        let shards = self.shared.shards.len();
        let mut replies = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let shard = shard_for(&name, partition, shards);
            let (reply, receiver) = bounded(1);
            let message = Control::OpenPartition {
                topic: Arc::clone(&name),
                partition: PartitionId(partition as i32),
                directory: directory.join(partition.to_string()),
                reply,
            };
            if !self.shared.shards[shard.0 as usize].send(message) {
                return Err("the engine is stopped".into());
            }
            replies.push((shard, receiver));
        }
        let mut routes = Vec::with_capacity(partitions as usize);
        for (shard, receiver) in replies {
            let opened = receiver.recv().map_err(|_| "shard stopped".to_string())??;
            routes.push(Route {
                shard,
                slot: opened.slot,
            });
        }
        Ok(Topic {
            inner: Arc::new(TopicInner { name, routes }),
        })
    }

    /// Creates a topic with `partitions` partitions (durably: its metadata is synced first).
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<Topic, TopicError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions {
                got: partitions,
                max: TOPIC_PARTITIONS_MAX,
            });
        }
        let mut topics = self.shared.topics.lock().expect("topic table");
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let directory = self.topic_directory(name);
        let storage_error = |error: std::io::Error| TopicError::Storage {
            topic: name.to_string(),
            reason: error.to_string(),
        };
        std::fs::create_dir_all(&directory).map_err(storage_error)?;
        crate::io::blocking::write_file_synced(
            &directory.join(TOPIC_META_FILE),
            format!("partitions={partitions}\n").as_bytes(),
        )
        .map_err(storage_error)?;
        File::open(&self.shared.config.data_dir)
            .and_then(|d| d.sync_all())
            .map_err(storage_error)?;
        let topic =
            self.open_partitions(name, partitions)
                .map_err(|reason| TopicError::Storage {
                    topic: name.to_string(),
                    reason,
                })?;
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Result<Topic, TopicError> {
        let topics = self.shared.topics.lock().expect("topic table");
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Topic> {
        let topics = self.shared.topics.lock().expect("topic table");
        let mut list: Vec<Topic> = topics.values().cloned().collect();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        list
    }

    /// A new producer handle (one ring pair per shard).
    pub fn producer(&self) -> Producer {
        Producer::new(Arc::clone(&self.shared))
    }

    /// A new idempotent producer handle with a producer id never handed out before (the
    /// high-water mark of ids is synced to `<data_dir>/producer-ids` first) and epoch 0.
    pub fn idempotent_producer(&self) -> Result<Producer, TopicError> {
        let id = self.allocate_producer_id()?;
        Ok(self.resume_producer(ProducerId(id), Epoch(0)))
    }

    /// A producer handle that sends as `producer` at `epoch`: to resend after a restart with
    /// the same identity (set the next sequences with `Producer::set_next_sequence`), or, with
    /// a higher epoch, to fence every handle still using an older one.
    pub fn resume_producer(&self, producer: ProducerId, epoch: Epoch) -> Producer {
        let mut handle = self.producer();
        handle.set_identity(producer, epoch);
        handle
    }

    fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        let mut next = self
            .shared
            .next_producer_id
            .lock()
            .expect("producer id allocator");
        let id = *next;
        let path = self.shared.config.data_dir.join(PRODUCER_IDS_FILE);
        crate::io::blocking::write_file_synced(&path, format!("next={}\n", id + 1).as_bytes())
            .map_err(|error| TopicError::Storage {
                topic: String::new(),
                reason: format!("{}: {error}", path.display()),
            })?;
        *next = id + 1;
        Ok(id)
    }

    /// A new consumer handle (one delivery ring per shard).
    pub fn consumer(&self) -> Consumer {
        Consumer::new(Arc::clone(&self.shared))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Stops the shards after they finished every record already handed to them: writes
    /// complete, acks go out, files are synced and indexes written. Handles still alive
    /// afterwards get [`crate::error::SendError::Stopped`].
    pub fn shutdown(self) {
        // Drop does the work.
    }

    fn stop(&mut self) {
        for shard in &self.shared.shards {
            shard.send(Control::Shutdown);
        }
        for shard in &self.shared.shards {
            let thread = shard.thread.lock().expect("shard thread handle").take();
            if let Some(thread) = thread {
                if thread.join().is_err() {
                    eprintln!("rill: a shard thread panicked");
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
