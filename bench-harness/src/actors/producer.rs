//! Producer actors: open-loop senders with intended send times.
//!
//! Each actor sends to one topic. With a rate, its k-th message has a fixed intended send
//! time (`schedule::RateSchedule`); the actor sends every message that is due, however late,
//! so a stall shows up as latency instead of silently lowering the load (no coordinated
//! omission). With rate 0 ("as fast as possible") a message's intended send time is the
//! moment the actor's previous send returned: time spent building the message and blocked
//! on backpressure counts as latency (and as delay).
//!
//! - publish latency = ack observed − intended send time;
//! - publish delay   = `try_send` returned − intended send time (how far behind schedule).
//!
//! A message is measured when it is first handed to the driver after warm-up ended (as OMB
//! resets its statistics then); the flag travels in the payload's stamp so consumers count
//! exactly the same messages. Classifying by intended send time instead would count nothing
//! when the rate cannot be reached: the schedule then lags further behind the clock each
//! second, and no message intended after warm-up would ever be sent.
//!
//! When the driver reports backpressure (`Full`) the message is kept, with its intended time,
//! and retried after collecting acks. Acks may arrive out of order across partitions, so the
//! [`TicketBook`] maps each ticket back to its actor and times.
//!
//! Thread: one producer thread runs several actors over one driver producer handle that it
//! creates itself; nothing here is shared with other threads except `Progress`.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::StartGate;
use crate::driver::{Ack, Driver, DriverProducer, OutgoingMessage, TrySendError};
use crate::keys::{KeyDistributor, KeyPool};
use crate::payload::{PayloadPool, Stamp};
use crate::plan::ProducerActorPlan;
use crate::progress::{LocalProgress, Progress};
use crate::schedule::{now_ns, RateSchedule, Timeline};
use crate::stats::{record_latency, ProducerStats};
use crate::workload::KeyDistributorType;

/// Most messages one actor sends in a row before the thread collects acks and lets the
/// other actors send: keeps ack timestamps fresh and actors fair when far behind.
const SEND_BURST_MESSAGES_MAX: usize = 64;
/// How long a thread blocked on backpressure waits for an ack before looking around again.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(1);
/// How long the end of a run waits for the acks of messages already sent.
const ACK_WAIT_MAX: Duration = Duration::from_secs(60);

/// What the run tells every producer thread.
#[derive(Debug)]
pub struct ProducerContext<'a, D: Driver> {
    pub driver: &'a D,
    pub topics: &'a [D::Topic],
    pub payloads: &'a PayloadPool,
    pub keys: &'a KeyPool,
    pub key_distributor: KeyDistributorType,
    /// Messages per second over all producers; 0 means as fast as possible.
    pub rate_messages_per_second: u64,
    /// Producers of the whole run (the schedule's interleave).
    pub producers: u32,
    pub progress: &'a Progress,
    pub gate: &'a StartGate,
    pub seed: u64,
}

/// What one producer actor did.
#[derive(Debug)]
pub struct ProducerActorResult {
    pub plan: ProducerActorPlan,
    pub stats: ProducerStats,
    /// Successfully acknowledged messages of every phase: what each subscription of the
    /// topic must receive.
    pub acknowledged_all_phases: u64,
}

/// What one producer thread did.
#[derive(Debug, Default)]
pub struct ProducerThreadResult {
    pub actors: Vec<ProducerActorResult>,
    /// Messages accepted whose ack never came back.
    pub acks_missing: u64,
    /// Acks for tickets that were never handed out, or handed back twice.
    pub acks_unexpected: u64,
    pub first_error: Option<String>,
}

/// A message accepted by the driver and not acknowledged yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub actor: u32,
    /// First handed to the driver after warm-up.
    pub measured: bool,
    pub intended_send_ns: u64,
    pub sent_ns: u64,
    pub bytes: u32,
}

/// Maps tickets (0, 1, 2, ... per driver handle) back to their messages. A ring indexed by
/// `ticket - first_ticket`: acks may come out of order, so finished slots become `None` and
/// the front is dropped once it is finished.
#[derive(Debug, Default)]
pub struct TicketBook {
    /// Ticket of `entries[0]`.
    first_ticket: u64,
    entries: VecDeque<Option<InFlight>>,
    outstanding: usize,
}

impl TicketBook {
    /// Records the message the driver just accepted under `ticket`.
    pub fn insert(&mut self, ticket: u64, entry: InFlight) {
        assert_eq!(
            ticket,
            self.first_ticket + self.entries.len() as u64,
            "driver tickets must count up by one per accepted message"
        );
        self.entries.push_back(Some(entry));
        self.outstanding += 1;
    }

    /// The message acknowledged under `ticket`; `None` when unknown or already taken.
    pub fn take(&mut self, ticket: u64) -> Option<InFlight> {
        let index = usize::try_from(ticket.checked_sub(self.first_ticket)?).ok()?;
        let entry = self.entries.get_mut(index)?.take()?;
        self.outstanding -= 1;
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.first_ticket += 1;
        }
        Some(entry)
    }

    /// Messages accepted and not acknowledged.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

struct ProducerActor {
    plan: ProducerActorPlan,
    schedule: Option<RateSchedule>,
    /// Index of the next message to send.
    next_message_index: u64,
    next_intended_send_ns: u64,
    /// A message handed back by backpressure, and whether it is measured; its intended send
    /// time is `next_intended_send_ns`.
    held: Option<(OutgoingMessage, bool)>,
    keys: KeyDistributor,
    random: StdRng,
    stats: ProducerStats,
    acknowledged_all_phases: u64,
}

impl ProducerActor {
    fn is_due(&self, now_ns: u64) -> bool {
        self.next_intended_send_ns <= now_ns
    }

    /// The message to send next (the held one, if any) and whether it is measured: a new
    /// message is measured when it is made after warm-up.
    fn take_message(
        &mut self,
        payloads: &PayloadPool,
        timeline: &Timeline,
        now_ns: u64,
    ) -> (OutgoingMessage, bool) {
        if let Some(held) = self.held.take() {
            return held;
        }
        let payload_index = if payloads.len() > 1 {
            self.random.gen_range(0..payloads.len())
        } else {
            0
        };
        let stamp = Stamp {
            intended_send_ns: self.next_intended_send_ns,
            measured: timeline.is_measured_at(now_ns),
        };
        let message = OutgoingMessage {
            key: self.keys.next_key(now_ns),
            value: payloads.message(payload_index, stamp),
        };
        (message, stamp.measured)
    }

    /// Moves on to the next message; `send_returned_ns` is when the last send returned.
    fn advance(&mut self, send_returned_ns: u64) {
        self.next_message_index += 1;
        self.next_intended_send_ns = match &self.schedule {
            Some(schedule) => schedule.intended_send_ns(self.next_message_index),
            None => send_returned_ns,
        };
    }
}

struct ProducerThread<'a, D: Driver> {
    context: &'a ProducerContext<'a, D>,
    timeline: Timeline,
    producer: D::Producer,
    actors: Vec<ProducerActor>,
    book: TicketBook,
    local: LocalProgress,
    acks_unexpected: u64,
    first_error: Option<String>,
}

/// Runs one producer thread's actors from the start gate to the last ack.
pub fn run_producer_thread<D: Driver>(
    context: &ProducerContext<'_, D>,
    plans: Vec<ProducerActorPlan>,
    thread_index: usize,
) -> ProducerThreadResult {
    super::tighten_timer_slack();
    let producer = context.driver.producer();
    let Some(timeline) = context.gate.arrive(true) else {
        return ProducerThreadResult::default();
    };
    let actors = plans
        .into_iter()
        .map(|plan| {
            let schedule = (context.rate_messages_per_second > 0).then(|| {
                RateSchedule::new(
                    timeline.load_start_ns,
                    plan.producer_index as u64,
                    context.producers as u64,
                    context.rate_messages_per_second,
                )
            });
            let next_intended_send_ns = schedule
                .as_ref()
                .map_or(timeline.load_start_ns, |schedule| {
                    schedule.intended_send_ns(0)
                });
            let seed = context.seed ^ ((thread_index as u64) << 32) ^ plan.producer_index as u64;
            ProducerActor {
                schedule,
                next_message_index: 0,
                next_intended_send_ns,
                held: None,
                keys: KeyDistributor::new(context.key_distributor, context.keys),
                random: StdRng::seed_from_u64(seed),
                stats: ProducerStats::default(),
                acknowledged_all_phases: 0,
                plan,
            }
        })
        .collect();
    let mut thread = ProducerThread {
        context,
        timeline,
        producer,
        actors,
        book: TicketBook::default(),
        local: LocalProgress::new(0),
        acks_unexpected: 0,
        first_error: None,
    };
    thread.send_until_end();
    let acks_missing = thread.wait_for_outstanding_acks();
    thread.local.flush(context.progress);
    ProducerThreadResult {
        actors: thread
            .actors
            .into_iter()
            .map(|actor| ProducerActorResult {
                plan: actor.plan,
                stats: actor.stats,
                acknowledged_all_phases: actor.acknowledged_all_phases,
            })
            .collect(),
        acks_missing,
        acks_unexpected: thread.acks_unexpected,
        first_error: thread.first_error,
    }
}

impl<D: Driver> ProducerThread<'_, D> {
    fn send_until_end(&mut self) {
        let end_ns = self.timeline.end_ns;
        loop {
            self.collect_ready_acks();
            let now = now_ns();
            self.local.flush_if_due(self.context.progress, now);
            if now >= end_ns {
                return;
            }
            let (sent_any, blocked) = self.send_due_messages(now);
            if sent_any {
                continue;
            }
            if blocked {
                if let Some(ack) = self.producer.wait_ack(BACKPRESSURE_WAIT) {
                    self.handle_ack(ack);
                }
                continue;
            }
            let earliest = self
                .actors
                .iter()
                .map(|actor| actor.next_intended_send_ns)
                .min()
                .unwrap_or(end_ns);
            self.wait_until(earliest.min(end_ns));
        }
    }

    /// Sends what is due, up to a burst per actor. Returns (sent any, hit backpressure).
    fn send_due_messages(&mut self, mut now: u64) -> (bool, bool) {
        let end_ns = self.timeline.end_ns;
        let mut sent_any = false;
        let mut blocked = false;
        for (index, actor) in self.actors.iter_mut().enumerate() {
            let topic = &self.context.topics[actor.plan.topic_index as usize];
            let mut burst = 0;
            while burst < SEND_BURST_MESSAGES_MAX
                && actor.is_due(now)
                && actor.next_intended_send_ns < end_ns
            {
                let (message, measured) =
                    actor.take_message(self.context.payloads, &self.timeline, now);
                let bytes = message.value.len() as u32;
                match self.producer.try_send(topic, message) {
                    Ok(ticket) => {
                        let sent_ns = now_ns();
                        self.book.insert(
                            ticket,
                            InFlight {
                                actor: index as u32,
                                measured,
                                intended_send_ns: actor.next_intended_send_ns,
                                sent_ns,
                                bytes,
                            },
                        );
                        actor.advance(sent_ns);
                        now = sent_ns;
                        burst += 1;
                        sent_any = true;
                    }
                    Err(TrySendError::Full(message)) => {
                        actor.held = Some((message, measured));
                        blocked = true;
                        break;
                    }
                    Err(TrySendError::Failed(error)) => {
                        actor.stats.send_failures += 1;
                        self.first_error.get_or_insert_with(|| error.to_string());
                        now = now_ns();
                        actor.advance(now);
                        burst += 1;
                    }
                }
            }
        }
        (sent_any, blocked)
    }

    fn collect_ready_acks(&mut self) {
        while let Some(ack) = self.producer.poll_ack() {
            self.handle_ack(ack);
        }
    }

    fn handle_ack(&mut self, ack: Ack) {
        let now = now_ns();
        let Some(entry) = self.book.take(ack.ticket) else {
            self.acks_unexpected += 1;
            return;
        };
        let actor = &mut self.actors[entry.actor as usize];
        match ack.result {
            Ok(()) => {
                actor.acknowledged_all_phases += 1;
                self.local.published += 1;
                record_latency(
                    &mut self.local.publish_latency_ns,
                    now,
                    entry.intended_send_ns,
                );
                if entry.measured {
                    let stats = &mut actor.stats;
                    stats.messages += 1;
                    stats.bytes += entry.bytes as u64;
                    stats.last_ack_ns = now;
                    record_latency(&mut stats.publish_latency_ns, now, entry.intended_send_ns);
                    record_latency(
                        &mut stats.publish_delay_ns,
                        entry.sent_ns,
                        entry.intended_send_ns,
                    );
                }
            }
            Err(error) => {
                actor.stats.send_failures += 1;
                self.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }

    /// Waits until `target_ns`, collecting acks meanwhile. Parks in the driver (an ack wakes
    /// it) or, with nothing in flight, sleeps; never spins or yields, however short the wait.
    ///
    /// Why: measured on the 2-core development machine at 50k msg/s (1 producer, 1 consumer,
    /// 2 pinned shards), parking costs ~35 us of wake-up lateness (median publish delay 38 us,
    /// median publish latency ~150 us), while yielding in a loop for waits under 200 us took
    /// CPU the shards needed and made things worse (median delay ~450 us, median latency
    /// ~800 us). Waking early by a margin, or a 1 ns timer slack, did not help either.
    fn wait_until(&mut self, target_ns: u64) {
        loop {
            let now = now_ns();
            if now >= target_ns {
                return;
            }
            let timeout = Duration::from_nanos(target_ns - now);
            if self.producer.in_flight() > 0 {
                if let Some(ack) = self.producer.wait_ack(timeout) {
                    self.handle_ack(ack);
                }
            } else {
                std::thread::sleep(timeout);
            }
        }
    }

    /// After the last send: waits (bounded) for every outstanding ack. Returns how many
    /// never came.
    fn wait_for_outstanding_acks(&mut self) -> u64 {
        let deadline_ns = now_ns() + ACK_WAIT_MAX.as_nanos() as u64;
        while self.book.outstanding() > 0 {
            let now = now_ns();
            if now >= deadline_ns {
                break;
            }
            let timeout = Duration::from_nanos((deadline_ns - now).min(10_000_000));
            match self.producer.wait_ack(timeout) {
                Some(ack) => self.handle_ack(ack),
                None if self.producer.in_flight() == 0 => break, // the driver owes nothing more
                None => {}
            }
            self.local.flush_if_due(self.context.progress, now);
        }
        self.book.outstanding() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: u32) -> InFlight {
        InFlight {
            actor,
            measured: true,
            intended_send_ns: actor as u64 * 10,
            sent_ns: actor as u64 * 10 + 1,
            bytes: 100,
        }
    }

    #[test]
    fn out_of_order_acks_find_their_messages() {
        let mut book = TicketBook::default();
        for ticket in 0..5 {
            book.insert(ticket, entry(ticket as u32));
        }
        assert_eq!(book.outstanding(), 5);
        assert_eq!(book.take(3), Some(entry(3)));
        assert_eq!(book.take(1), Some(entry(1)));
        assert_eq!(book.entries.len(), 5, "the front is still in flight");
        assert_eq!(book.take(0), Some(entry(0)));
        assert_eq!(book.first_ticket, 2, "finished front slots are dropped");
        assert_eq!(book.take(2), Some(entry(2)));
        assert_eq!(book.first_ticket, 4);
        book.insert(5, entry(5));
        assert_eq!(book.take(5), Some(entry(5)));
        assert_eq!(book.take(4), Some(entry(4)));
        assert_eq!(book.outstanding(), 0);
        assert!(book.entries.is_empty());
    }

    #[test]
    fn unknown_and_repeated_tickets_find_nothing() {
        let mut book = TicketBook::default();
        book.insert(0, entry(0));
        book.insert(1, entry(1));
        assert_eq!(book.take(7), None);
        assert_eq!(book.take(1), Some(entry(1)));
        assert_eq!(book.take(1), None, "an ack counts once");
        assert_eq!(book.take(0), Some(entry(0)));
        assert_eq!(book.take(0), None, "below the ring");
        assert_eq!(book.outstanding(), 0);
    }

    #[test]
    #[should_panic(expected = "count up by one")]
    fn a_skipped_ticket_is_a_driver_bug() {
        let mut book = TicketBook::default();
        book.insert(0, entry(0));
        book.insert(2, entry(2));
    }
}
