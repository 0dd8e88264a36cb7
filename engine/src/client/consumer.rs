//! The consumer handle: subscriptions to partitions, records out as zero-copy views.
//!
//! A shard hands a subscription whole stored batches: at the tail, the very `Bytes` it
//! wrote; behind the tail, views of the segment's memory map. The consumer walks those
//! batches and slices key and value out of them without copying. Records come in offset
//! order per subscription; records before the subscription's position are skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::engine::{Shared, Topic};
use crate::error::SubscribeError;
use crate::record::{KafkaBatch, KafkaRecord, StoredBatch};
use crate::ring::spsc;
use crate::shard::messages::{Control, Delivery};
use crate::shard::wake::Parker;
use crate::types::{Offset, PartitionId, StartPosition};

/// Names a subscription of one consumer handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u32);

/// A record as a consumer sees it. `key` and `value` share the stored buffer.
#[derive(Clone, Debug)]
pub struct ConsumerRecord {
    pub subscription: SubscriptionId,
    pub partition: PartitionId,
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
}

#[derive(Debug)]
struct SubscriptionState {
    topic: Topic,
    partition: PartitionId,
    /// Offset of the next record to hand out.
    next_offset: i64,
    active: bool,
    /// Why the subscription stopped, when a delivered batch failed its checks.
    error: Option<String>,
}

/// The delivery being walked.
#[derive(Debug, Default)]
struct Current {
    subscription: u32,
    batches: Bytes,
    /// Verify every batch's CRCs before handing out its records (read from a segment file).
    from_disk: bool,
    /// Position of the next stored batch in `batches`.
    position: usize,
    /// Records of the stored batch being handed out, as ranges into `payload`.
    payload: Bytes,
    records: Vec<KafkaRecord>,
    next_record: usize,
}

/// Reads records from subscribed partitions. One per thread.
pub struct Consumer {
    shared: Arc<Shared>,
    id: u64,
    lanes: Vec<spsc::Consumer<Delivery>>,
    parker: Arc<Parker>,
    subscriptions: Vec<SubscriptionState>,
    current: Option<Current>,
    next_lane: usize,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(shared: Arc<Shared>) -> Consumer {
        let id = shared.new_consumer_id();
        let parker = Arc::new(Parker::for_current_thread());
        let capacity = shared.config.consumer_ring_deliveries_max;
        let mut lanes = Vec::with_capacity(shared.shards.len());
        for shard in &shared.shards {
            let (deliveries, receiver) = spsc::channel(capacity);
            shard.send(Control::AttachConsumer {
                consumer: id,
                deliveries,
                parker: Arc::clone(&parker),
            });
            lanes.push(receiver);
        }
        Consumer {
            shared,
            id,
            lanes,
            parker,
            subscriptions: Vec::new(),
            current: None,
            next_lane: 0,
        }
    }

    /// Subscribes to one partition; returns the subscription and the offset it starts at.
    pub fn subscribe(
        &mut self,
        topic: &Topic,
        partition: PartitionId,
        start: StartPosition,
    ) -> Result<(SubscriptionId, Offset), SubscribeError> {
        let partitions = topic.partitions();
        if partition.0 < 0 || partition.0 as u32 >= partitions {
            return Err(SubscribeError::UnknownPartition {
                partition: partition.0,
                partitions,
            });
        }
        let route = topic.inner.routes[partition.0 as usize];
        let subscription = self.subscriptions.len() as u32;
        let (reply, receiver) = crossbeam_channel::bounded(1);
        let message = Control::Subscribe {
            consumer: self.id,
            subscription,
            slot: route.slot,
            start,
            reply,
        };
        if !self.shared.shards[route.shard.0 as usize].send(message) {
            return Err(SubscribeError::Stopped);
        }
        let offset = receiver.recv().map_err(|_| SubscribeError::Stopped)?;
        self.subscriptions.push(SubscriptionState {
            topic: topic.clone(),
            partition,
            next_offset: offset.0,
            active: true,
            error: None,
        });
        Ok((SubscriptionId(subscription), offset))
    }

    /// Subscribes to every partition of a topic.
    pub fn subscribe_all(
        &mut self,
        topic: &Topic,
        start: StartPosition,
    ) -> Result<Vec<SubscriptionId>, SubscribeError> {
        (0..topic.partitions() as i32)
            .map(|partition| {
                self.subscribe(topic, PartitionId(partition), start)
                    .map(|(id, _)| id)
            })
            .collect()
    }

    /// Stops a subscription; records already delivered for it are dropped.
    pub fn unsubscribe(&mut self, subscription: SubscriptionId) {
        let Some(state) = self.subscriptions.get_mut(subscription.0 as usize) else {
            return;
        };
        if !state.active {
            return;
        }
        state.active = false;
        let route = state.topic.inner.routes[state.partition.0 as usize];
        self.shared.shards[route.shard.0 as usize].send(Control::Unsubscribe {
            consumer: self.id,
            subscription: subscription.0,
            slot: route.slot,
        });
    }

    /// The topic and partition of a subscription.
    pub fn subscription(&self, subscription: SubscriptionId) -> Option<(&Topic, PartitionId)> {
        self.subscriptions
            .get(subscription.0 as usize)
            .map(|s| (&s.topic, s.partition))
    }

    /// Why a subscription stopped handing out records: a batch read back from disk failed its
    /// CRC or record checks (a bit flip after the batch was written). `None` while healthy.
    pub fn subscription_error(&self, subscription: SubscriptionId) -> Option<&str> {
        self.subscriptions
            .get(subscription.0 as usize)?
            .error
            .as_deref()
    }

    /// Offset of the next record a subscription will hand out.
    pub fn position(&self, subscription: SubscriptionId) -> Option<Offset> {
        self.subscriptions
            .get(subscription.0 as usize)
            .map(|s| Offset(s.next_offset))
    }

    /// The next record if one is ready.
    pub fn try_poll(&mut self) -> Option<ConsumerRecord> {
        loop {
            if let Some(record) = self.next_from_current() {
                return Some(record);
            }
            let delivery = self.next_delivery()?;
            self.current = Some(Current {
                subscription: delivery.subscription,
                batches: delivery.batches,
                from_disk: delivery.from_disk,
                ..Current::default()
            });
        }
    }

    /// The next record, waiting up to `timeout`.
    pub fn poll(&mut self, timeout: Duration) -> Option<ConsumerRecord> {
        if let Some(record) = self.try_poll() {
            return Some(record);
        }
        let deadline = Instant::now() + timeout;
        let mut spins = 0u32;
        loop {
            if let Some(record) = self.try_poll() {
                return Some(record);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if !self.parker.is_current_thread() {
                std::thread::sleep(Duration::from_micros(50).min(deadline - now));
                continue;
            }
            self.parker.prepare_park();
            if self.lanes.iter().any(|lane| !lane.is_empty()) {
                self.parker.cancel_park();
            } else {
                self.parker.park(deadline - now);
            }
        }
    }

    fn next_delivery(&mut self) -> Option<Delivery> {
        let lanes = self.lanes.len();
        for step in 0..lanes {
            let lane = (self.next_lane + step) % lanes;
            if let Some(delivery) = self.lanes[lane].pop() {
                self.next_lane = (lane + 1) % lanes;
                return Some(delivery);
            }
        }
        None
    }

    fn next_from_current(&mut self) -> Option<ConsumerRecord> {
        let current = self.current.as_mut()?;
        loop {
            let state = &mut self.subscriptions[current.subscription as usize];
            while current.next_record < current.records.len() {
                let record = &current.records[current.next_record];
                current.next_record += 1;
                if !state.active || record.offset < state.next_offset {
                    continue;
                }
                state.next_offset = record.offset + 1;
                return Some(ConsumerRecord {
                    subscription: SubscriptionId(current.subscription),
                    partition: state.partition,
                    offset: Offset(record.offset),
                    timestamp_ms: record.timestamp_ms,
                    key: record.key.clone().map(|range| current.payload.slice(range)),
                    value: current.payload.slice(record.value.clone()),
                });
            }
            // Next stored batch of the delivery.
            if current.position >= current.batches.len() {
                self.current = None;
                return None;
            }
            let rest = &current.batches[current.position..];
            let parsed = if current.from_disk {
                StoredBatch::parse(rest)
            } else {
                StoredBatch::parse_header(rest)
            };
            let batch = match parsed {
                Ok(batch) => batch,
                Err(error) => {
                    // Damaged on disk after it was written and recovered: hand out nothing from
                    // here on for this subscription, and say why.
                    let reason = format!(
                        "corrupt stored batch at or after offset {} of partition {}: {error}",
                        state.next_offset, state.partition
                    );
                    eprintln!("rill: consumer stops reading a subscription: {reason}");
                    state.active = false;
                    state.error = Some(reason);
                    self.current = None;
                    return None;
                }
            };
            let start = current.position + crate::record::PREFIX_BYTES;
            let end = current.position + batch.stored_len();
            current.position = end;
            if !state.active || batch.next_offset() <= state.next_offset {
                continue; // everything in it was handed out already
            }
            current.payload = current.batches.slice(start..end);
            current.records.clear();
            current.next_record = 0;
            let kafka = KafkaBatch::parse_verified(&current.payload)
                .expect("stored batches are valid Kafka batches");
            for record in kafka.records() {
                current
                    .records
                    .push(record.expect("stored records are well formed"));
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Dropping the rings tells the shards (they see them abandoned).
    }
}
