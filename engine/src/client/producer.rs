//! The producer handle: records in, offsets back.
//!
//! Backpressure policy: each (producer handle, shard) ring pair admits at most
//! `producer_ring_records_max` records awaiting their ack. Past that, [`Producer::try_send`]
//! returns [`TrySendError::Full`] at once and [`Producer::send`] waits for acks; memory never
//! grows without bound, and a slow disk slows producers down instead of queueing forever.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::engine::{Shared, Topic};
use crate::error::{SendError, TrySendError};
use crate::partitioner::partition_for_key;
use crate::producer::next_sequence;
use crate::ring::spsc;
use crate::shard::messages::{Control, ProduceAck, ProduceRequest, ProducerStamp};
use crate::shard::wake::Parker;
use crate::types::{Epoch, Offset, PartitionId, ProducerId, Sequence};

/// A record to send. Key and value are `Bytes`: handing over an existing buffer copies nothing
/// until the owning shard encodes it into its write buffer.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Explicit partition; otherwise keyed records go to `murmur2(key) % partitions` (Kafka's
    /// default partitioner) and unkeyed ones round-robin over partitions.
    pub partition: Option<PartitionId>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Milliseconds since the Unix epoch; now when `None`.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn new(value: impl Into<Bytes>) -> Record {
        Record {
            value: value.into(),
            ..Record::default()
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: PartitionId) -> Record {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Record {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Names one record sent with [`Producer::try_send`]; tickets count up from 0 per handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What became of a record.
#[derive(Debug)]
pub struct SendOutcome {
    pub ticket: Ticket,
    pub partition: PartitionId,
    pub result: Result<Offset, SendError>,
}

struct Lane {
    requests: spsc::Producer<ProduceRequest>,
    acks: spsc::Consumer<ProduceAck>,
    in_flight: usize,
}

/// Sends records. One per thread; see the module docs for backpressure.
pub struct Producer {
    shared: Arc<Shared>,
    lanes: Vec<Lane>,
    parker: Arc<Parker>,
    next_ticket: u64,
    round_robin: u32,
    /// Outcomes collected while waiting for a particular one.
    outcomes: VecDeque<SendOutcome>,
    in_flight_max: usize,
    /// Idempotent producers: identity, next sequence per (topic, partition), and the
    /// (topic, partition) and sequence of every record awaiting its outcome.
    identity: Option<(ProducerId, Epoch)>,
    sequences: HashMap<(Arc<str>, i32), i32>,
    stamped: HashMap<u64, ((Arc<str>, i32), i32)>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Whether sequence `a` comes before `b` (within half the sequence space, as they wrap).
fn sequence_before(a: i32, b: i32) -> bool {
    let distance = (b as i64 - a as i64).rem_euclid(i32::MAX as i64 + 1);
    distance != 0 && distance < (1 << 30)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    pub(crate) fn new(shared: Arc<Shared>) -> Producer {
        let capacity = shared.config.producer_ring_records_max;
        let parker = Arc::new(Parker::for_current_thread());
        let mut lanes = Vec::with_capacity(shared.shards.len());
        for shard in &shared.shards {
            let (requests, shard_requests) = spsc::channel(capacity);
            let (shard_acks, acks) = spsc::channel(capacity);
            shard.send(Control::AttachProducer {
                requests: shard_requests,
                acks: shard_acks,
                parker: Arc::clone(&parker),
            });
            lanes.push(Lane {
                requests,
                acks,
                in_flight: 0,
            });
        }
        let in_flight_max = lanes.first().map_or(0, |lane| lane.requests.capacity());
        Producer {
            shared,
            lanes,
            parker,
            next_ticket: 0,
            round_robin: 0,
            outcomes: VecDeque::new(),
            in_flight_max,
            identity: None,
            sequences: HashMap::new(),
            stamped: HashMap::new(),
        }
    }

    /// Makes this handle an idempotent producer with this identity: every record carries the
    /// producer id, epoch and a sequence per partition; a retried record is acknowledged
    /// with its original offset instead of being stored twice, and an older epoch is fenced.
    pub(crate) fn set_identity(&mut self, producer: ProducerId, epoch: Epoch) {
        self.identity = Some((producer, epoch));
        self.sequences.clear();
    }

    /// The idempotent identity of this handle, if it has one.
    pub fn identity(&self) -> Option<(ProducerId, Epoch)> {
        self.identity
    }

    /// Sets the next sequence for a partition (resuming an identity after a restart).
    pub fn set_next_sequence(&mut self, topic: &Topic, partition: PartitionId, sequence: Sequence) {
        self.sequences
            .insert((Arc::clone(&topic.inner.name), partition.0), sequence.0);
    }

    /// Records awaiting their outcome.
    pub fn in_flight(&self) -> usize {
        self.lanes.iter().map(|lane| lane.in_flight).sum::<usize>() + self.outcomes.len()
    }

    /// Most records awaiting their ack per shard before `try_send` reports `Full`.
    pub fn in_flight_max_per_shard(&self) -> usize {
        self.in_flight_max
    }

    /// The partition a record goes to.
    /// Unkeyed records without a partition take the next partition in round-robin order;
    /// the turn moves on only when a record is queued (see `try_send`).
    pub fn partition_for(&self, topic: &Topic, record: &Record) -> Result<PartitionId, SendError> {
        let partitions = topic.partitions();
        match (record.partition, &record.key) {
            (Some(partition), _) => {
                if partition.0 < 0 || partition.0 as u32 >= partitions {
                    return Err(SendError::UnknownPartition {
                        partition: partition.0,
                        partitions,
                    });
                }
                Ok(partition)
            }
            (None, Some(key)) => Ok(PartitionId(partition_for_key(key, partitions) as i32)),
            (None, None) => Ok(PartitionId((self.round_robin % partitions) as i32)),
        }
    }

    /// Queues a record without waiting. `Err(TrySendError::Full)` is backpressure: collect
    /// outcomes ([`Producer::poll_outcome`]) and try again.
    pub fn try_send(&mut self, topic: &Topic, record: Record) -> Result<Ticket, TrySendError> {
        let partition = self.partition_for(topic, &record)?;
        let record_partition = record.partition;
        let record_has_no_key = record.key.is_none();
        let route = topic.inner.routes[partition.0 as usize];
        let lane = &mut self.lanes[route.shard.0 as usize];
        if lane.requests.is_abandoned() {
            return Err(SendError::Stopped.into());
        }
        if lane.in_flight >= self.in_flight_max {
            self.collect();
            let lane = &self.lanes[route.shard.0 as usize];
            if lane.in_flight >= self.in_flight_max {
                return Err(TrySendError::Full(record));
            }
        }
        let ticket = self.next_ticket;
        let request = ProduceRequest {
            slot: route.slot,
            ticket,
            timestamp_ms: record.timestamp_ms.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            stamp: self.identity.map(|(producer, epoch)| ProducerStamp {
                producer,
                epoch,
                sequence: Sequence(
                    self.sequences
                        .get(&(Arc::clone(&topic.inner.name), partition.0))
                        .copied()
                        .unwrap_or(0),
                ),
            }),
        };
        let stamp = request.stamp;
        let lane = &mut self.lanes[route.shard.0 as usize];
        if let Err(request) = lane.requests.try_push(request) {
            let record = Record {
                partition: record.partition,
                key: request.key,
                value: request.value,
                timestamp_ms: record.timestamp_ms,
            };
            return Err(TrySendError::Full(record));
        }
        lane.in_flight += 1;
        if record_partition.is_none() && record_has_no_key {
            self.round_robin = self.round_robin.wrapping_add(1);
        }
        if let Some(stamp) = stamp {
            let key = (Arc::clone(&topic.inner.name), partition.0);
            self.sequences
                .insert(key.clone(), next_sequence(stamp.sequence.0));
            self.stamped.insert(ticket, (key, stamp.sequence.0));
        }
        self.next_ticket += 1;
        self.shared.shards[route.shard.0 as usize].waker.wake();
        Ok(Ticket(ticket))
    }

    /// Sends a record and waits for its outcome: the partition and offset it was stored at,
    /// acknowledged as the engine's durability mode promises.
    pub fn send(
        &mut self,
        topic: &Topic,
        record: Record,
    ) -> Result<(PartitionId, Offset), SendError> {
        let mut record = record;
        let ticket = loop {
            match self.try_send(topic, record) {
                Ok(ticket) => break ticket,
                Err(TrySendError::Full(returned)) => {
                    record = returned;
                    self.wait_for_acks(Duration::from_millis(10));
                }
                Err(TrySendError::Send(error)) => return Err(error),
            }
        };
        loop {
            if let Some(index) = self.outcomes.iter().position(|o| o.ticket == ticket) {
                let outcome = self.outcomes.remove(index).expect("found");
                return outcome.result.map(|offset| (outcome.partition, offset));
            }
            if self.lanes.iter().any(|lane| lane.requests.is_abandoned()) && self.collect() == 0 {
                return Err(SendError::Stopped);
            }
            self.wait_for_acks(Duration::from_millis(10));
        }
    }

    /// The next outcome, if one is ready.
    pub fn poll_outcome(&mut self) -> Option<SendOutcome> {
        if self.outcomes.is_empty() {
            self.collect();
        }
        self.outcomes.pop_front()
    }

    /// The next outcome, waiting up to `timeout` for one.
    pub fn wait_outcome(&mut self, timeout: Duration) -> Option<SendOutcome> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.poll_outcome() {
                return Some(outcome);
            }
            let now = Instant::now();
            if now >= deadline || self.lanes.iter().all(|lane| lane.in_flight == 0) {
                return None;
            }
            self.wait_for_acks(deadline - now);
        }
    }

    /// Waits until every record sent so far has an outcome (kept for `poll_outcome`).
    pub fn flush(&mut self) {
        while self.lanes.iter().any(|lane| lane.in_flight > 0) {
            if self.lanes.iter().any(|lane| lane.requests.is_abandoned()) && self.collect() == 0 {
                return;
            }
            self.wait_for_acks(Duration::from_millis(10));
            self.collect();
        }
    }

    /// Moves acks from every ring into `outcomes`; returns how many arrived.
    fn collect(&mut self) -> usize {
        let mut collected = 0;
        for lane in &mut self.lanes {
            let outcomes = &mut self.outcomes;
            let stamped = &mut self.stamped;
            let sequences = &mut self.sequences;
            let taken = lane.acks.pop_batch(usize::MAX, |ack| {
                if let Some((key, sequence)) = stamped.remove(&ack.ticket) {
                    if ack.result.is_err() {
                        // The record was not stored: its sequence is the next one to send,
                        // unless an even earlier one failed.
                        let next = sequences.entry(key).or_insert(sequence);
                        if sequence_before(sequence, *next) {
                            *next = sequence;
                        }
                    }
                }
                outcomes.push_back(SendOutcome {
                    ticket: Ticket(ack.ticket),
                    partition: ack.partition,
                    result: ack.result,
                });
            });
            lane.in_flight -= taken;
            collected += taken;
        }
        collected
    }

    /// Spins briefly, then parks until a shard pushes an ack or `timeout` passes.
    fn wait_for_acks(&mut self, timeout: Duration) {
        for _ in 0..64 {
            if self.lanes.iter().any(|lane| !lane.acks.is_empty()) {
                self.collect();
                return;
            }
            std::hint::spin_loop();
        }
        if !self.parker.is_current_thread() {
            // Moved to another thread: the shard would wake the wrong one, so poll.
            std::thread::sleep(Duration::from_micros(50).min(timeout));
            self.collect();
            return;
        }
        self.parker.prepare_park();
        if self.lanes.iter().any(|lane| !lane.acks.is_empty()) {
            self.parker.cancel_park();
        } else {
            self.parker.park(timeout);
        }
        self.collect();
    }
}
