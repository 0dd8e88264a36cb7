//! One core's event loop. A shard owns its partitions outright: their files, their write
//! buffers, their subscriptions. Nothing here takes a lock; other threads reach a shard only
//! through SPSC rings (records in, acks and deliveries out) and a control channel.
//!
//! One loop turn:
//! 1. take control messages (open partition, attach rings, subscribe, stop);
//! 2. drain every producer ring, encoding records straight into each partition's write
//!    buffer (Kafka v2 records inside stored batches);
//! 3. for each partition with staged records, submit one write for everything staged
//!    (group write), through the shard's own io_uring;
//! 4. reap completions; in `Sync` mode submit one `fdatasync` per partition covering every
//!    write completed so far (group commit), never linked to writes still in flight;
//! 5. commit what is now durable per the mode, in order: ack producers, hand the very write
//!    buffers to live subscribers, and feed lagging subscribers from the segment maps;
//! 6. with nothing to do: spin for `idle_spin`, then sleep in `io_uring_enter` until an I/O
//!    completes or a client writes the shard's eventfd.

pub(crate) mod idempotence;
pub(crate) mod messages;
pub(crate) mod wake;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;

use crate::config::{Durability, EngineConfig, BATCH_BYTES_MAX, BATCH_RECORDS_MAX};
use crate::error::SendError;
use crate::io::{Completion, FileKey, Storage};
use crate::log::{Cursor, LogConfig, PartitionLog, Placement};
use crate::record::{finish_batches, BatchBuilder, StoredBatch};
use crate::ring::spsc;
use crate::types::{Offset, PartitionId, ShardId, StartPosition};
use idempotence::{PartitionIdempotence, ProducerBatch, RecordDecision};
use messages::{Control, Delivery, OpenedPartition, ProduceAck, ProduceRequest};
use wake::{Parker, Waker};

/// Token layout: kind in the top 2 bits, partition slot in the next 30, sequence below.
const TOKEN_WRITE: u64 = 1 << 62;
const TOKEN_SYNC: u64 = 2 << 62;
const TOKEN_INTERVAL_SYNC: u64 = 3 << 62;

fn token(kind: u64, slot: u32, sequence: u32) -> u64 {
    kind | ((slot as u64) << 32) | sequence as u64
}

/// How often a shard with lagging subscribers looks at their rings while otherwise idle.
const LAGGING_POLL: Duration = Duration::from_millis(1);

struct ProducerLane {
    requests: spsc::Consumer<ProduceRequest>,
    acks: spsc::Producer<ProduceAck>,
    parker: Arc<Parker>,
    notify: bool,
    closed: bool,
}

struct ConsumerLane {
    consumer: u64,
    deliveries: spsc::Producer<Delivery>,
    parker: Arc<Parker>,
    notify: bool,
    closed: bool,
}

struct Subscription {
    lane: usize,
    id: u32,
    /// Next batch boundary to deliver.
    cursor: Cursor,
    /// Caught up: new commits are handed over as they happen.
    live: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteState {
    InFlight,
    Written,
    Durable,
    Failed,
}

struct PendingWrite {
    sequence: u32,
    placement: Placement,
    buffer: Bytes,
    first_offset: i64,
    next_offset: i64,
    max_timestamp_ms: i64,
    /// (producer lane, ticket, offset) per record.
    acks: Vec<(u32, u64, i64)>,
    /// Idempotent producers' batches in this write.
    producer_batches: Vec<ProducerBatch>,
    state: WriteState,
    error: Option<String>,
}

/// Records staged for a partition in this turn, encoded in place.
struct Staged {
    buffer: Vec<u8>,
    batches: Vec<BatchBuilder>,
    records: i64,
    max_timestamp_ms: i64,
    /// (producer lane, ticket) per record, in record order.
    acks: Vec<(u32, u64)>,
}

impl Staged {
    fn new() -> Staged {
        Staged {
            buffer: Vec::new(),
            batches: Vec::new(),
            records: 0,
            max_timestamp_ms: i64::MIN,
            acks: Vec::new(),
        }
    }
}

struct Partition {
    id: PartitionId,
    log: PartitionLog,
    staged: Staged,
    writes: VecDeque<PendingWrite>,
    next_sequence: u32,
    /// Outstanding `fdatasync`s of a group commit, and the sequence it covers up to.
    sync_outstanding: u32,
    sync_covers_below: u32,
    /// A write failed: flush nothing until in-flight writes finish and the log is rolled back.
    failing: bool,
    /// Files written since the last interval sync.
    unsynced_files: Vec<FileKey>,
    interval_sync_outstanding: u32,
    subscriptions: Vec<Subscription>,
    idempotence: PartitionIdempotence,
    /// Refusals of a failed write held back until the file is cut back: (lane, ticket, cause).
    withheld_refusals: Vec<(u32, u64, String)>,
}

/// A running shard, as the engine holds it.
#[derive(Debug)]
pub(crate) struct ShardHandle {
    pub control: crossbeam_channel::Sender<Control>,
    pub waker: Arc<Waker>,
    /// Taken by the one caller that joins the thread (control plane only).
    pub thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ShardHandle {
    pub fn send(&self, message: Control) -> bool {
        let sent = self.control.send(message).is_ok();
        self.waker.signal();
        sent
    }
}

/// Starts shard `id`; `core` pins it when given.
pub(crate) fn spawn(
    id: ShardId,
    config: EngineConfig,
    core: Option<core_affinity::CoreId>,
) -> std::io::Result<ShardHandle> {
    let waker = Arc::new(Waker::new()?);
    let (control, control_receiver) = crossbeam_channel::unbounded();
    let (ready_sender, ready) = crossbeam_channel::bounded(1);
    let shard_waker = Arc::clone(&waker);
    let thread = std::thread::Builder::new()
        .name(format!("rill-shard-{}", id.0))
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            let storage = crate::io::open_storage(&config.storage, config.io_uring_entries);
            let _ = ready_sender.send(());
            let mut shard = Shard::new(id, config, storage, control_receiver, shard_waker);
            shard.run();
        })?;
    ready
        .recv()
        .map_err(|_| std::io::Error::other("shard thread died while starting"))?;
    Ok(ShardHandle {
        control,
        waker,
        thread: std::sync::Mutex::new(Some(thread)),
    })
}

struct Shard {
    #[allow(dead_code)]
    id: ShardId,
    config: EngineConfig,
    storage: Box<dyn Storage>,
    control: Receiver<Control>,
    waker: Arc<Waker>,
    partitions: Vec<Partition>,
    producers: Vec<ProducerLane>,
    consumers: Vec<ConsumerLane>,
    completions: Vec<Completion>,
    stopping: bool,
    /// Partitions whose cut-back after a failed write failed and is retried every turn.
    cuts_pending: Vec<u32>,
    next_interval_sync: Option<Instant>,
}

impl Shard {
    fn new(
        id: ShardId,
        config: EngineConfig,
        storage: Box<dyn Storage>,
        control: Receiver<Control>,
        waker: Arc<Waker>,
    ) -> Shard {
        let next_interval_sync = match config.durability {
            Durability::Interval(every) => Some(Instant::now() + every),
            _ => None,
        };
        Shard {
            id,
            config,
            storage,
            control,
            waker,
            partitions: Vec::new(),
            producers: Vec::new(),
            consumers: Vec::new(),
            completions: Vec::new(),
            stopping: false,
            cuts_pending: Vec::new(),
            next_interval_sync,
        }
    }

    fn run(&mut self) {
        let mut idle_since: Option<Instant> = None;
        loop {
            let mut progress = self.take_control();
            progress |= self.drain_producers();
            if self.stopping {
                // Everything handed over before the stop was drained above; later records are
                // refused (their handles see the rings abandoned once the shard exits).
                for lane in &mut self.producers {
                    lane.closed = true;
                }
            }
            self.flush_staged();
            if let Err(error) = self.storage.submit() {
                eprintln!("rill: shard io_uring submit failed: {error}");
            }
            progress |= self.reap();
            progress |= self.interval_sync();
            progress |= self.feed_lagging();
            progress |= self.retry_cuts();
            self.notify_clients();
            if self.stopping && self.drained() {
                self.finish();
                return;
            }
            if progress {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.config.idle_spin {
                std::hint::spin_loop();
                continue;
            }
            self.sleep();
            idle_since = None;
        }
    }

    fn sleep(&mut self) {
        self.waker.prepare_sleep();
        let work_waiting = !self.control.is_empty()
            || self
                .producers
                .iter()
                .any(|lane| !lane.closed && !lane.requests.is_empty());
        if work_waiting {
            self.waker.awake();
            return;
        }
        let lagging = !self.cuts_pending.is_empty()
            || self
                .partitions
                .iter()
                .any(|p| p.subscriptions.iter().any(|s| !s.live));
        let mut timeout = if lagging { Some(LAGGING_POLL) } else { None };
        if let Some(deadline) = self.next_interval_sync {
            let until = deadline.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        if self.stopping {
            timeout = Some(LAGGING_POLL);
        }
        if let Err(error) = self.storage.park(self.waker.fd(), timeout) {
            eprintln!("rill: shard wait failed: {error}");
            std::thread::sleep(LAGGING_POLL);
        }
        self.waker.awake();
    }

    fn take_control(&mut self) -> bool {
        let mut progress = false;
        while let Ok(message) = self.control.try_recv() {
            progress = true;
            match message {
                Control::OpenPartition {
                    topic,
                    partition,
                    directory,
                    reply,
                } => {
                    let config = LogConfig {
                        segment_bytes_max: self.config.segment_bytes_max,
                        index_interval_bytes: self.config.index_interval_bytes,
                        write_bytes_max: self.config.turn_partition_bytes_max as u64
                            + BATCH_BYTES_MAX as u64,
                    };
                    let result = match PartitionLog::open(&mut *self.storage, &directory, config) {
                        Ok((log, report)) => {
                            let idempotence = idempotence::rebuild(&log);
                            if let Some(reason) = &report.cut_reason {
                                eprintln!(
                                    "rill: {topic}/{}: recovery cut {} bytes ({reason})",
                                    partition.0, report.bytes_truncated
                                );
                            }
                            self.partitions.push(Partition {
                                id: partition,
                                log,
                                staged: Staged::new(),
                                writes: VecDeque::new(),
                                next_sequence: 0,
                                sync_outstanding: 0,
                                sync_covers_below: 0,
                                failing: false,
                                unsynced_files: Vec::new(),
                                interval_sync_outstanding: 0,
                                subscriptions: Vec::new(),
                                idempotence,
                                withheld_refusals: Vec::new(),
                            });
                            Ok(OpenedPartition {
                                slot: self.partitions.len() as u32 - 1,
                            })
                        }
                        Err(error) => Err(error.to_string()),
                    };
                    let _ = reply.send(result);
                }
                Control::AttachProducer {
                    requests,
                    acks,
                    parker,
                } => {
                    self.producers.push(ProducerLane {
                        requests,
                        acks,
                        parker,
                        notify: false,
                        closed: false,
                    });
                }
                Control::AttachConsumer {
                    consumer,
                    deliveries,
                    parker,
                } => {
                    self.consumers.push(ConsumerLane {
                        consumer,
                        deliveries,
                        parker,
                        notify: false,
                        closed: false,
                    });
                }
                Control::Subscribe {
                    consumer,
                    subscription,
                    slot,
                    start,
                    reply,
                } => {
                    let lane = self
                        .consumers
                        .iter()
                        .position(|lane| lane.consumer == consumer)
                        .expect("a consumer attaches before it subscribes");
                    let log = &self.partitions[slot as usize].log;
                    let cursor = match start {
                        StartPosition::Earliest => log.cursor_at(log.start_offset()),
                        StartPosition::Latest => log.cursor_at(log.committed_next_offset()),
                        StartPosition::Offset(offset) => log.cursor_at(offset.0),
                        StartPosition::TimestampMs(timestamp) => log.cursor_at_timestamp(timestamp),
                    };
                    let start_offset = match start {
                        StartPosition::Offset(offset) => offset
                            .0
                            .clamp(log.start_offset(), log.committed_next_offset()),
                        _ => cursor.offset,
                    };
                    let live = cursor.offset == log.committed_next_offset();
                    self.partitions[slot as usize]
                        .subscriptions
                        .push(Subscription {
                            lane,
                            id: subscription,
                            cursor,
                            live,
                        });
                    let _ = reply.send(Offset(start_offset));
                }
                Control::Unsubscribe {
                    consumer,
                    subscription,
                    slot,
                } => {
                    let consumers = &self.consumers;
                    self.partitions[slot as usize].subscriptions.retain(|s| {
                        !(s.id == subscription && consumers[s.lane].consumer == consumer)
                    });
                }
                Control::Shutdown => self.stopping = true,
            }
        }
        progress
    }

    /// Moves records from every producer ring into partition write buffers.
    fn drain_producers(&mut self) -> bool {
        let mut progress = false;
        let mut refused = Vec::new();
        let turn_bytes_max = self.config.turn_partition_bytes_max;
        let producers_max = self.config.producers_per_partition_max;
        for lane_index in 0..self.producers.len() {
            let lane = &mut self.producers[lane_index];
            if lane.closed {
                continue;
            }
            let partitions = &mut self.partitions;
            let storage = &mut *self.storage;
            let taken = lane.requests.pop_batch(usize::MAX, |request| {
                let slot = request.slot;
                let partition = &mut partitions[slot as usize];
                let record_bytes =
                    BatchBuilder::record_bytes_max(request.key.as_deref(), &request.value);
                if record_bytes + BATCH_OVERHEAD_BYTES > BATCH_BYTES_MAX {
                    let bytes = request.key.as_ref().map_or(0, Bytes::len) + request.value.len();
                    let error = SendError::RecordTooLarge {
                        bytes,
                        max: BATCH_BYTES_MAX - BATCH_OVERHEAD_BYTES,
                    };
                    let ack = ProduceAck {
                        ticket: request.ticket,
                        partition: partition.id,
                        result: Err(error),
                    };
                    refused.push((lane_index as u32, ack));
                    return;
                }
                if partition.staged.buffer.len() + record_bytes + BATCH_OVERHEAD_BYTES
                    > turn_bytes_max
                {
                    flush_partition(partition, slot, storage, &mut refused);
                }
                if let Some(stamp) = request.stamp {
                    let decision = partition.idempotence.admit(stamp, producers_max);
                    if let Some(result) = refusal(decision, stamp, partition.id, producers_max) {
                        let ack = ProduceAck {
                            ticket: request.ticket,
                            partition: partition.id,
                            result,
                        };
                        refused.push((lane_index as u32, ack));
                        return;
                    }
                }
                stage(
                    &mut partition.staged,
                    lane_index as u32,
                    &request,
                    record_bytes,
                );
            });
            if taken > 0 {
                progress = true;
            } else if lane.requests.is_abandoned() && lane.requests.is_empty() {
                lane.closed = true;
            }
        }
        self.push_refusals(refused);
        progress
    }

    fn push_refusals(&mut self, refused: Vec<(u32, ProduceAck)>) {
        for (lane, ack) in refused {
            push_ack(
                &mut self.producers,
                lane,
                ack.ticket,
                ack.partition,
                ack.result,
            );
        }
    }

    /// Submits one write per partition for everything staged this turn.
    fn flush_staged(&mut self) {
        let mut refused = Vec::new();
        for slot in 0..self.partitions.len() {
            flush_partition(
                &mut self.partitions[slot],
                slot as u32,
                &mut *self.storage,
                &mut refused,
            );
        }
        self.push_refusals(refused);
    }

    fn reap(&mut self) -> bool {
        self.storage.reap(&mut self.completions);
        if self.completions.is_empty() {
            return false;
        }
        let mut touched = Vec::new();
        for completion in std::mem::take(&mut self.completions) {
            let kind = completion.token & (3 << 62);
            let slot = ((completion.token >> 32) & 0x3fff_ffff) as u32;
            let sequence = completion.token as u32;
            let partition = &mut self.partitions[slot as usize];
            match kind {
                TOKEN_WRITE => {
                    let front = partition
                        .writes
                        .front()
                        .expect("a write completed")
                        .sequence;
                    let write = &mut partition.writes[sequence.wrapping_sub(front) as usize];
                    debug_assert_eq!(write.sequence, sequence);
                    match completion.result {
                        Ok(()) => write.state = WriteState::Written,
                        Err(error) => {
                            write.state = WriteState::Failed;
                            write.error = Some(error.to_string());
                            partition.failing = true;
                        }
                    }
                }
                TOKEN_SYNC => {
                    partition.sync_outstanding -= 1;
                    let covers_below = partition.sync_covers_below;
                    for write in partition.writes.iter_mut() {
                        if write.sequence.wrapping_sub(covers_below) as i32 >= 0 {
                            break;
                        }
                        match &completion.result {
                            Ok(()) => {}
                            Err(error) => {
                                write.state = WriteState::Failed;
                                write.error = Some(format!("fdatasync: {error}"));
                                partition.failing = true;
                            }
                        }
                    }
                    if partition.sync_outstanding == 0 {
                        for write in partition.writes.iter_mut() {
                            if write.sequence.wrapping_sub(covers_below) as i32 >= 0 {
                                break;
                            }
                            if write.state == WriteState::Written {
                                write.state = WriteState::Durable;
                            }
                        }
                    }
                }
                _ => {
                    partition.interval_sync_outstanding -= 1;
                    if let Err(error) = completion.result {
                        eprintln!(
                            "rill: partition {}: interval fdatasync failed: {error}",
                            partition.id.0
                        );
                    }
                }
            }
            touched.push(slot);
        }
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.advance(slot);
        }
        true
    }

    /// Commits, acks and delivers the completed writes at the front of a partition's queue,
    /// starts the group commit in `Sync` mode, and rolls back after a failure.
    fn advance(&mut self, slot: u32) {
        let durability = self.config.durability;
        let partition = &mut self.partitions[slot as usize];
        if durability == Durability::Sync && partition.sync_outstanding == 0 {
            // Group commit: one fdatasync per file for the run of completed writes.
            let run: Vec<&PendingWrite> = partition
                .writes
                .iter()
                .skip_while(|w| w.state == WriteState::Durable)
                .take_while(|w| w.state == WriteState::Written)
                .collect();
            if let Some(last) = run.last() {
                let covers_below = last.sequence.wrapping_add(1);
                let mut files: Vec<FileKey> = run.iter().map(|w| w.placement.file).collect();
                files.dedup();
                partition.sync_covers_below = covers_below;
                partition.sync_outstanding = files.len() as u32;
                for file in files {
                    self.storage
                        .fdatasync(file, token(TOKEN_SYNC, slot, covers_below));
                }
            }
        }
        let committed_state = if durability == Durability::Sync {
            WriteState::Durable
        } else {
            WriteState::Written
        };
        while partition
            .writes
            .front()
            .is_some_and(|w| w.state == committed_state)
        {
            let write = partition.writes.pop_front().expect("checked");
            partition.log.commit(
                write.placement,
                write.buffer.len() as u64,
                write.first_offset,
                write.next_offset,
                write.max_timestamp_ms,
            );
            if matches!(durability, Durability::Interval(_))
                && !partition.unsynced_files.contains(&write.placement.file)
            {
                partition.unsynced_files.push(write.placement.file);
            }
            partition.idempotence.commit(&write.producer_batches);
            for (lane, ticket, offset) in &write.acks {
                push_ack(
                    &mut self.producers,
                    *lane,
                    *ticket,
                    partition.id,
                    Ok(Offset(*offset)),
                );
            }
            for subscription in partition.subscriptions.iter_mut().filter(|s| s.live) {
                let lane = &mut self.consumers[subscription.lane];
                if lane.closed || subscription.cursor.offset != write.first_offset {
                    subscription.live = subscription.cursor.offset == write.next_offset;
                    continue;
                }
                let delivery = Delivery {
                    subscription: subscription.id,
                    batches: write.buffer.clone(),
                    from_disk: false,
                };
                subscription.cursor = Cursor {
                    segment_base_offset: write.placement.segment_base_offset,
                    position: write.placement.position + write.buffer.len() as u64,
                    offset: write.next_offset,
                };
                if lane.deliveries.try_push(delivery).is_err() {
                    // Ring full: rewind and catch up from the segment map later.
                    subscription.cursor = Cursor {
                        segment_base_offset: write.placement.segment_base_offset,
                        position: write.placement.position,
                        offset: write.first_offset,
                    };
                    subscription.live = false;
                }
                lane.notify = true;
            }
        }
        if let Err(error) = partition.log.write_sealed_indexes(&mut *self.storage) {
            eprintln!(
                "rill: partition {}: cannot write index: {error}",
                partition.id.0
            );
        }
        if partition.failing
            && partition.sync_outstanding == 0
            && partition
                .writes
                .iter()
                .all(|w| w.state != WriteState::InFlight)
        {
            self.roll_back(slot);
        }
    }

    /// After a failed write or sync: every write from the first failed one on is refused,
    /// the log is cut back to where that write began, and new writes may go again.
    fn roll_back(&mut self, slot: u32) {
        let partition = &mut self.partitions[slot as usize];
        let Some(first_failed) = partition
            .writes
            .iter()
            .position(|w| w.state == WriteState::Failed)
        else {
            partition.failing = false;
            return;
        };
        let cause = partition.writes[first_failed]
            .error
            .clone()
            .unwrap_or_default();
        let failed: Vec<PendingWrite> = partition.writes.drain(first_failed..).collect();
        let first = &failed[0];
        let cut = partition
            .log
            .roll_back(&mut *self.storage, first.placement, first.first_offset);
        let mut refusals = Vec::new();
        for write in &failed {
            for (lane, ticket, _) in &write.acks {
                refusals.push((*lane, *ticket, cause.clone()));
            }
        }
        // Records staged behind the failure were checked against sequences that are now
        // refused: refuse them too, so a producer resends everything from its first failure.
        let staged = std::mem::replace(&mut partition.staged, Staged::new());
        for (lane, ticket) in staged.acks {
            let cause = format!("{cause} (an earlier record of this partition failed)");
            refusals.push((lane, ticket, cause));
        }
        let remaining = partition
            .writes
            .iter()
            .flat_map(|write| write.producer_batches.iter());
        partition.idempotence.reset_pending(remaining);
        partition.withheld_refusals.extend(refusals);
        match cut {
            Ok(()) => self.release_refusals(slot),
            Err(error) => {
                // The refused bytes are still in the file: a crash now would bring them back
                // at recovery. Refuse nothing (and write nothing) until the cut is done.
                eprintln!(
                    "rill: partition {}: cutting back a failed write failed ({error}); retrying",
                    partition.id.0
                );
                if !self.cuts_pending.contains(&slot) {
                    self.cuts_pending.push(slot);
                }
            }
        }
    }

    /// The cut after a failure is done: the refused records can be refused, and the
    /// partition takes writes again.
    fn release_refusals(&mut self, slot: u32) {
        let partition = &mut self.partitions[slot as usize];
        for (lane, ticket, cause) in partition.withheld_refusals.drain(..) {
            let error = SendError::Storage {
                partition: partition.id.0,
                cause,
            };
            push_ack(&mut self.producers, lane, ticket, partition.id, Err(error));
        }
        partition.failing = false;
    }

    /// Retries cuts that failed; returns whether one completed.
    fn retry_cuts(&mut self) -> bool {
        let mut progress = false;
        for slot in std::mem::take(&mut self.cuts_pending) {
            let partition = &mut self.partitions[slot as usize];
            match partition.log.finish_pending_cut(&mut *self.storage) {
                Ok(()) => {
                    self.release_refusals(slot);
                    progress = true;
                }
                Err(_) => self.cuts_pending.push(slot),
            }
        }
        progress
    }

    fn interval_sync(&mut self) -> bool {
        let Some(deadline) = self.next_interval_sync else {
            return false;
        };
        if Instant::now() < deadline {
            return false;
        }
        if let Durability::Interval(every) = self.config.durability {
            self.next_interval_sync = Some(Instant::now() + every);
        }
        for (slot, partition) in self.partitions.iter_mut().enumerate() {
            if partition.interval_sync_outstanding > 0 {
                continue;
            }
            for file in partition.unsynced_files.drain(..) {
                partition.interval_sync_outstanding += 1;
                self.storage
                    .fdatasync(file, token(TOKEN_INTERVAL_SYNC, slot as u32, 0));
            }
        }
        true
    }

    /// Hands committed batches to subscribers that fell behind, from the segment maps.
    fn feed_lagging(&mut self) -> bool {
        let mut progress = false;
        let bytes_max = self.config.catch_up_delivery_bytes_max;
        for partition in &mut self.partitions {
            let log = &partition.log;
            for subscription in partition.subscriptions.iter_mut().filter(|s| !s.live) {
                let lane = &mut self.consumers[subscription.lane];
                if lane.closed {
                    continue;
                }
                if lane.deliveries.is_abandoned() {
                    lane.closed = true;
                    continue;
                }
                while lane.deliveries.slots_free() > 0 {
                    match log.read(subscription.cursor, bytes_max) {
                        Some((batches, next)) => {
                            let delivery = Delivery {
                                subscription: subscription.id,
                                batches,
                                from_disk: true,
                            };
                            if lane.deliveries.try_push(delivery).is_err() {
                                break;
                            }
                            subscription.cursor = next;
                            lane.notify = true;
                            progress = true;
                        }
                        None => {
                            subscription.live = true;
                            break;
                        }
                    }
                }
            }
            // Subscriptions of consumers that went away are dropped.
            let consumers = &self.consumers;
            partition
                .subscriptions
                .retain(|s| !consumers[s.lane].closed);
        }
        progress
    }

    fn notify_clients(&mut self) {
        for lane in self.producers.iter_mut().filter(|lane| lane.notify) {
            lane.notify = false;
            lane.parker.unpark();
        }
        for lane in self.consumers.iter_mut().filter(|lane| lane.notify) {
            lane.notify = false;
            lane.parker.unpark();
        }
    }

    /// Stopping: everything drained, staged and in flight is done.
    fn drained(&self) -> bool {
        self.storage.in_flight() == 0
            && self
                .producers
                .iter()
                .all(|lane| lane.closed || lane.requests.is_empty())
            && self
                .partitions
                .iter()
                .all(|p| p.writes.is_empty() && p.staged.records == 0)
    }

    fn finish(&mut self) {
        for partition in std::mem::take(&mut self.partitions) {
            for segment in partition.log.segments() {
                let token = token(TOKEN_INTERVAL_SYNC, 0, 0);
                self.storage.fdatasync(segment.file, token);
            }
            let _ = self.storage.submit();
            while self.storage.in_flight() > 0 {
                let _ = self.storage.park(self.waker.fd(), Some(LAGGING_POLL));
                self.storage.reap(&mut self.completions);
            }
            self.completions.clear();
            if let Err(error) = partition.log.write_indexes(&mut *self.storage) {
                eprintln!(
                    "rill: partition {}: cannot write index at shutdown: {error}",
                    partition.id.0
                );
            }
            partition.log.close(&mut *self.storage);
        }
    }
}

/// The refusal for an idempotence decision other than `Append`.
fn refusal(
    decision: RecordDecision,
    stamp: messages::ProducerStamp,
    partition: PartitionId,
    producers_max: usize,
) -> Option<Result<Offset, SendError>> {
    Some(match decision {
        RecordDecision::Append => return None,
        RecordDecision::Duplicate { offset } => Ok(Offset(offset)),
        RecordDecision::Fenced { current } => Err(SendError::Fenced {
            producer: stamp.producer.0,
            current: current.0,
        }),
        RecordDecision::OutOfOrder { expected } => Err(SendError::OutOfOrderSequence {
            partition: partition.0,
            sequence: stamp.sequence.0,
            expected,
        }),
        RecordDecision::UnknownProducerId => Err(SendError::UnknownProducerId {
            producer: stamp.producer.0,
        }),
        RecordDecision::TableFull => Err(SendError::ProducerTableFull {
            partition: partition.0,
            max: producers_max,
        }),
    })
}

/// Bytes a stored batch adds around its records.
const BATCH_OVERHEAD_BYTES: usize =
    crate::record::PREFIX_BYTES + crate::record::kafka::KAFKA_HEADER_BYTES;

/// Encodes one record into a partition's staged write, opening a new batch when the current
/// one is full. Nothing is written here: the turn flushes once per partition.
fn stage(staged: &mut Staged, lane: u32, request: &ProduceRequest, record_bytes: usize) {
    let producer = request
        .stamp
        .map_or((-1, -1, -1), |s| (s.producer.0, s.epoch.0, s.sequence.0));
    let open_new = match staged.batches.last() {
        None => true,
        Some(builder) => {
            let (id, epoch, base_sequence) = builder.producer();
            let next =
                crate::producer::last_sequence(base_sequence.max(0), builder.record_count() + 1);
            let continues =
                id == producer.0 && epoch == producer.1 && (id < 0 || next == producer.2);
            !continues
                || builder.record_count() as usize >= BATCH_RECORDS_MAX
                || builder.len(&staged.buffer) + record_bytes > BATCH_BYTES_MAX
        }
    };
    if open_new {
        let mut builder = BatchBuilder::begin(&mut staged.buffer);
        if producer.0 >= 0 {
            builder.set_producer(producer.0, producer.1, producer.2);
        }
        staged.batches.push(builder);
    }
    let builder = staged.batches.last_mut().expect("just ensured");
    builder.push(
        &mut staged.buffer,
        request.timestamp_ms,
        request.key.as_deref(),
        &request.value,
    );
    staged.records += 1;
    staged.max_timestamp_ms = staged.max_timestamp_ms.max(request.timestamp_ms);
    staged.acks.push((lane, request.ticket));
}

/// Assigns offsets to a partition's staged records, finishes their batches and submits one
/// write for all of them. Records that cannot be placed are refused into `refused`.
fn flush_partition(
    partition: &mut Partition,
    slot: u32,
    storage: &mut dyn Storage,
    refused: &mut Vec<(u32, ProduceAck)>,
) {
    if partition.staged.records == 0 || partition.failing {
        return;
    }
    let staged = std::mem::replace(&mut partition.staged, Staged::new());
    let bytes = staged.buffer.len() as u64;
    let (placement, first_offset) = match partition.log.assign(storage, bytes, staged.records) {
        Ok(assigned) => assigned,
        Err(error) => {
            let cause = format!("cannot roll segment: {error}");
            for (lane, ticket) in staged.acks {
                let result = Err(SendError::Storage {
                    partition: partition.id.0,
                    cause: cause.clone(),
                });
                refused.push((
                    lane,
                    ProduceAck {
                        ticket,
                        partition: partition.id,
                        result,
                    },
                ));
            }
            return;
        }
    };
    let mut buffer = staged.buffer;
    let producer_batches = idempotence::producer_batches(&staged.batches, first_offset);
    let next_offset = finish_batches(&mut buffer, staged.batches, first_offset);
    assert_eq!(
        next_offset,
        first_offset + staged.records,
        "every staged record got an offset"
    );
    verify_written(&buffer, first_offset, next_offset);
    let acks = staged
        .acks
        .into_iter()
        .enumerate()
        .map(|(index, (lane, ticket))| (lane, ticket, first_offset + index as i64))
        .collect();
    let buffer = Bytes::from(buffer);
    let sequence = partition.next_sequence;
    partition.next_sequence = partition.next_sequence.wrapping_add(1);
    storage.write(
        placement.file,
        placement.position,
        buffer.clone(),
        token(TOKEN_WRITE, slot, sequence),
    );
    partition.writes.push_back(PendingWrite {
        sequence,
        placement,
        buffer,
        first_offset,
        next_offset: first_offset + staged.records,
        max_timestamp_ms: staged.max_timestamp_ms,
        acks,
        producer_batches,
        state: WriteState::InFlight,
        error: None,
    });
}

/// Checks the batches of a write before it goes to disk: headers always, payload CRCs too in
/// debug builds (recovery and readers check them again on the way back).
fn verify_written(buffer: &[u8], first_offset: i64, next_offset: i64) {
    let mut position = 0;
    let mut offset = first_offset;
    while position < buffer.len() {
        let rest = &buffer[position..];
        let batch = if cfg!(debug_assertions) {
            StoredBatch::parse(rest)
        } else {
            StoredBatch::parse_header(rest)
        };
        let batch = batch.expect("a batch the shard just built is valid");
        assert_eq!(batch.base_offset(), offset, "offsets grow without gaps");
        offset = batch.next_offset();
        position += batch.stored_len();
    }
    assert_eq!(
        (position, offset),
        (buffer.len(), next_offset),
        "the write holds exactly its batches"
    );
}

fn push_ack(
    producers: &mut [ProducerLane],
    lane: u32,
    ticket: u64,
    partition: PartitionId,
    result: Result<Offset, SendError>,
) {
    let lane = &mut producers[lane as usize];
    // The producer never has more records in flight than its ack ring holds, so this fits.
    let pushed = lane.acks.try_push(ProduceAck {
        ticket,
        partition,
        result,
    });
    debug_assert!(
        pushed.is_ok() || lane.acks.is_abandoned(),
        "ack ring overflow"
    );
    lane.notify = true;
}
