//! Consumer actors: readers that measure end-to-end latency and check what they receive.
//!
//! Each actor reads a range of one topic's partitions for one subscription. Every delivery
//! carries a `payload::Stamp` in its first 8 bytes; end-to-end latency is receive time minus
//! its intended send time, so producer delays are included. Only messages the producer marked
//! as measured count towards the measurement; every message counts towards "did each
//! subscription receive everything that was acknowledged".
//!
//! Checks, per subscription (one partition): offsets must grow by exactly one. A repeated or
//! older offset is a duplicate (not counted as received); a jump is a gap (those messages
//! will also show as missing). A value too short to carry a stamp, or stamped in the future,
//! is malformed.
//!
//! Thread: one consumer thread runs several actors over one driver consumer handle that it
//! creates itself; it subscribes everything before the start gate opens and stops when the
//! coordinator raises `stop`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::StartGate;
use crate::driver::{Delivery, Driver, DriverConsumer, DriverError};
use crate::payload::Stamp;
use crate::plan::ConsumerActorPlan;
use crate::progress::{LocalProgress, Progress};
use crate::schedule::now_ns;
use crate::stats::{record_latency, ConsumerStats};

/// How long an idle consumer thread waits in the driver before checking `stop`.
const POLL_WAIT: Duration = Duration::from_millis(10);
/// Deliveries handled between two looks at the clock for progress hand-over.
const DELIVERIES_PER_FLUSH_CHECK: u32 = 256;

/// What the run tells every consumer thread.
#[derive(Debug)]
pub struct ConsumerContext<'a, D: Driver> {
    pub driver: &'a D,
    pub topics: &'a [D::Topic],
    pub subscription_groups: usize,
    pub progress: &'a Progress,
    pub gate: &'a StartGate,
    /// Raised by the coordinator once every subscription received everything (or it gave up).
    pub stop: &'a AtomicBool,
}

/// What one consumer actor did.
#[derive(Debug)]
pub struct ConsumerActorResult {
    pub stats: ConsumerStats,
}

/// What one consumer thread did, and what was wrong with what it received.
#[derive(Debug, Default)]
pub struct ConsumerThreadResult {
    pub actors: Vec<ConsumerActorResult>,
    pub duplicates: u64,
    pub offset_gaps: u64,
    pub malformed: u64,
    /// Deliveries on a subscription this handle never made.
    pub unknown_subscription: u64,
    pub setup_error: Option<DriverError>,
}

/// One subscription of the thread's handle: one partition for one actor.
#[derive(Debug)]
struct Slot {
    actor: u32,
    subscription_group: u32,
    last_offset: Option<i64>,
}

/// Runs one consumer thread's actors from subscription to `stop`.
pub fn run_consumer_thread<D: Driver>(
    context: &ConsumerContext<'_, D>,
    plans: Vec<ConsumerActorPlan>,
) -> ConsumerThreadResult {
    super::tighten_timer_slack();
    let mut consumer = context.driver.consumer();
    let mut result = ConsumerThreadResult::default();
    let mut slots = Vec::new();
    'subscribe: for (actor, plan) in plans.iter().enumerate() {
        let topic = &context.topics[plan.topic_index as usize];
        for partition in plan.partitions.clone() {
            match consumer.subscribe(topic, partition) {
                Ok(subscription) => {
                    assert_eq!(
                        subscription as usize,
                        slots.len(),
                        "driver subscriptions must count up by one per handle"
                    );
                    slots.push(Slot {
                        actor: actor as u32,
                        subscription_group: plan.subscription_group,
                        last_offset: None,
                    });
                }
                Err(error) => {
                    result.setup_error = Some(error);
                    break 'subscribe;
                }
            }
        }
    }
    if context.gate.arrive(result.setup_error.is_none()).is_none() {
        return result;
    }
    let mut stats: Vec<ConsumerStats> = plans.iter().map(|_| ConsumerStats::default()).collect();
    let mut local = LocalProgress::new(context.subscription_groups);
    let mut since_flush_check = 0u32;
    loop {
        let delivery = match consumer.try_poll() {
            Some(delivery) => delivery,
            None => {
                local.flush_if_due(context.progress, now_ns());
                if context.stop.load(Ordering::Acquire) {
                    break;
                }
                match consumer.poll(POLL_WAIT) {
                    Some(delivery) => delivery,
                    None => continue,
                }
            }
        };
        handle_delivery(delivery, &mut slots, &mut stats, &mut local, &mut result);
        since_flush_check += 1;
        if since_flush_check >= DELIVERIES_PER_FLUSH_CHECK {
            since_flush_check = 0;
            local.flush_if_due(context.progress, now_ns());
        }
    }
    local.flush(context.progress);
    result.actors = stats
        .into_iter()
        .map(|stats| ConsumerActorResult { stats })
        .collect();
    result
}

fn handle_delivery(
    delivery: Delivery,
    slots: &mut [Slot],
    stats: &mut [ConsumerStats],
    local: &mut LocalProgress,
    result: &mut ConsumerThreadResult,
) {
    let now = now_ns();
    let Some(slot) = slots.get_mut(delivery.subscription as usize) else {
        result.unknown_subscription += 1;
        return;
    };
    if let Some(last) = slot.last_offset {
        if delivery.offset <= last {
            result.duplicates += 1;
            return;
        }
        result.offset_gaps += (delivery.offset - last - 1) as u64;
    }
    slot.last_offset = Some(delivery.offset);
    local.consumed += 1;
    local.received_by_group[slot.subscription_group as usize] += 1;
    let stamp = match Stamp::decode(&delivery.value) {
        Some(stamp) if stamp.intended_send_ns <= now => stamp,
        _ => {
            result.malformed += 1;
            return;
        }
    };
    record_latency(
        &mut local.end_to_end_latency_ns,
        now,
        stamp.intended_send_ns,
    );
    if stamp.measured {
        let stats = &mut stats[slot.actor as usize];
        stats.messages += 1;
        stats.bytes += delivery.value.len() as u64;
        stats.last_receive_ns = now;
        record_latency(
            &mut stats.end_to_end_latency_ns,
            now,
            stamp.intended_send_ns,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(subscription: u32, offset: i64, intended: u64) -> Delivery {
        let stamp = Stamp {
            intended_send_ns: intended & !(1 << 63),
            measured: intended >= 100,
        };
        let mut value = stamp.encode().to_vec();
        value.extend_from_slice(&[0; 24]);
        Delivery {
            subscription,
            offset,
            value: value.into(),
        }
    }

    /// The stamps below are a few hundred ns after the process clock's base; when this test
    /// ran first in its process, "now" could still be earlier than them and good deliveries
    /// were counted as stamped in the future.
    #[test]
    fn deliveries_are_checked_counted_and_measured_after_warm_up() {
        crate::schedule::now_ns();
        std::thread::sleep(std::time::Duration::from_millis(1));
        let mut slots = vec![
            Slot {
                actor: 0,
                subscription_group: 0,
                last_offset: None,
            },
            Slot {
                actor: 1,
                subscription_group: 1,
                last_offset: None,
            },
        ];
        let mut stats = vec![ConsumerStats::default(), ConsumerStats::default()];
        let mut local = LocalProgress::new(2);
        let mut result = ConsumerThreadResult::default();
        let mut handle =
            |delivery| handle_delivery(delivery, &mut slots, &mut stats, &mut local, &mut result);
        handle(delivery(0, 5, 50)); // warm-up: received, not measured
        handle(delivery(0, 6, 150)); // measured
        handle(delivery(0, 6, 150)); // duplicate
        handle(delivery(0, 9, 160)); // two missing before it
        handle(delivery(1, 0, 170));
        handle(delivery(7, 0, 170)); // unknown subscription
        handle(delivery(1, 1, u64::MAX >> 1)); // stamped in the future
        assert_eq!(result.duplicates, 1);
        assert_eq!(result.offset_gaps, 2);
        assert_eq!(result.unknown_subscription, 1);
        assert_eq!(result.malformed, 1);
        assert_eq!(local.consumed, 5);
        assert_eq!(local.received_by_group, vec![3, 2]);
        assert_eq!(stats[0].messages, 2);
        assert_eq!(stats[0].bytes, 64);
        assert_eq!(stats[1].messages, 1);
        assert_eq!(stats[0].end_to_end_latency_ns.len(), 2);
    }
}
