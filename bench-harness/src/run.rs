//! One benchmark run, from topic creation to merged results. Driver-agnostic.
//!
//! Order of events (the coordinator is the calling thread):
//! 1. create the topics; build the payload and key pools;
//! 2. start consumer threads, which subscribe every partition from its end, and producer
//!    threads, which make their handles; all meet at the start gate;
//! 3. fix the timeline (load start, warm-up end, end) and let them go; print a progress line
//!    each second, resetting the live latencies when warm-up ends;
//! 4. producers stop sending at the end, then wait for their acks;
//! 5. the coordinator waits (bounded) until each subscription received every acknowledged
//!    message of its topic, then stops the consumers;
//! 6. merge every actor's histograms and counters; count what went wrong.
//!
//! Warm-up is excluded per message, not by when a sample arrives: a message counts in the
//! measurement exactly when its producer first handed it to the driver after warm-up ended,
//! and it carries that verdict in its stamp, so producer and consumers count the same
//! messages and `consume.messages` equals `publish.messages × subscriptionsPerTopic` when
//! nothing is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::actors::consumer::{run_consumer_thread, ConsumerContext, ConsumerThreadResult};
use crate::actors::producer::{run_producer_thread, ProducerContext, ProducerThreadResult};
use crate::actors::StartGate;
use crate::driver::{Driver, DriverError};
use crate::keys::KeyPool;
use crate::payload::{PayloadError, PayloadPool};
use crate::plan::Plan;
use crate::progress::{Progress, ProgressReading};
use crate::schedule::{now_ns, Timeline};
use crate::stats::{ConsumerStats, ProducerStats};
use crate::workload::LoadedWorkload;

/// Delay between fixing the timeline and the first intended send, so every thread is past
/// the gate before the first message is due.
const LOAD_START_DELAY: Duration = Duration::from_millis(5);
/// How often the drain checks whether every subscription has everything.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(5);
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub loaded: LoadedWorkload,
    pub test_duration: Duration,
    pub warmup_duration: Duration,
    /// Messages per second over all producers; 0 means as fast as possible.
    pub rate_messages_per_second: u64,
    pub producer_threads: usize,
    pub consumer_threads: usize,
    /// Longest wait, after the producers finished, for consumers to receive everything.
    pub drain_timeout: Duration,
    pub seed: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("cannot start an actor thread: {0}")]
    Thread(std::io::Error),
    #[error("actor thread {thread} panicked: {message}")]
    ActorPanicked { thread: String, message: String },
}

/// What went wrong during a run; every count is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCounts {
    /// Sends the driver refused or acknowledged with an error.
    pub send_failures: u64,
    /// Accepted messages whose ack never came.
    pub acks_missing: u64,
    /// Acks for tickets never handed out (or acked twice).
    pub acks_unexpected: u64,
    /// Acknowledged messages some subscription never received.
    pub messages_missing: u64,
    /// Messages a subscription received beyond what was acknowledged to its topic.
    pub messages_unexpected: u64,
    /// Deliveries repeating an offset already received.
    pub messages_duplicated: u64,
    /// Values without a valid intended-send-time stamp.
    pub messages_malformed: u64,
    /// Deliveries on a subscription the handle never made.
    pub deliveries_unknown_subscription: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.send_failures
            + self.acks_missing
            + self.acks_unexpected
            + self.messages_missing
            + self.messages_unexpected
            + self.messages_duplicated
            + self.messages_malformed
            + self.deliveries_unknown_subscription
    }
}

/// Merged results of a run.
#[derive(Debug)]
pub struct RunResult {
    pub plan: Plan,
    pub producer_threads: usize,
    pub consumer_threads: usize,
    pub timeline: Timeline,
    pub publish: ProducerStats,
    pub consume: ConsumerStats,
    /// Measured messages acknowledged × subscriptions per topic, summed over topics.
    pub expected_consume_messages: u64,
    /// Every acknowledged message, warm-up included.
    pub published_all_phases: u64,
    /// Every message each subscription should have received, warm-up included.
    pub expected_all_phases: u64,
    /// Every message received (no duplicates), warm-up included.
    pub received_all_phases: u64,
    /// Offsets skipped within a partition (diagnostic; such messages are also missing).
    pub offset_gaps: u64,
    pub errors: ErrorCounts,
    pub first_error: Option<String>,
    /// How long the consumers needed after the producers' last ack.
    pub drain_duration: Duration,
    pub drain_timed_out: bool,
}

impl RunResult {
    pub fn measured_duration(&self) -> Duration {
        Duration::from_nanos(self.timeline.end_ns - self.timeline.measure_start_ns)
    }

    /// From warm-up's end to the later of the end and the last measured ack: acks that
    /// trail the end (a deep pipeline at max rate) are charged for the time they took.
    pub fn publish_window(&self) -> Duration {
        let end_ns = self.timeline.end_ns.max(self.publish.last_ack_ns);
        Duration::from_nanos(end_ns - self.timeline.measure_start_ns)
    }

    /// From warm-up's end to the later of the end and the last measured delivery: consumers
    /// that lag are charged for the time they took.
    pub fn consume_window(&self) -> Duration {
        let end_ns = self.timeline.end_ns.max(self.consume.last_receive_ns);
        Duration::from_nanos(end_ns - self.timeline.measure_start_ns)
    }

    /// Everything acknowledged reached every subscription, and nothing else did.
    pub fn is_complete(&self) -> bool {
        self.consume.messages == self.expected_consume_messages
            && self.received_all_phases == self.expected_all_phases
    }
}

/// Runs a workload against a driver.
pub fn run<D: Driver>(driver: &D, settings: &RunSettings) -> Result<RunResult, RunError> {
    let workload = &settings.loaded.workload;
    let plan = Plan::new(
        workload,
        settings.producer_threads,
        settings.consumer_threads,
    );
    let mut random = StdRng::seed_from_u64(settings.seed);
    let message_bytes = workload.message_size_bytes as usize;
    let payloads = match &settings.loaded.payload_path {
        Some(path) => PayloadPool::from_file(path, message_bytes)?,
        None => PayloadPool::randomized(
            message_bytes,
            workload.random_bytes_ratio,
            workload.randomized_payload_pool_size as usize,
            &mut random,
        ),
    };
    let keys = KeyPool::generate(&mut random);

    let mut topics = Vec::with_capacity(plan.topic_names.len());
    for name in &plan.topic_names {
        topics.push(driver.create_topic(name, plan.partitions_per_topic)?);
    }

    let groups = plan.subscription_groups as usize;
    let progress = Progress::new(groups);
    let actor_threads = plan.producer_threads.len() + plan.consumer_threads.len();
    let gate = StartGate::new(actor_threads);
    let stop = AtomicBool::new(false);
    let producer_context = ProducerContext {
        driver,
        topics: &topics,
        payloads: &payloads,
        keys: &keys,
        key_distributor: workload.key_distributor,
        rate_messages_per_second: settings.rate_messages_per_second,
        producers: plan.producers,
        progress: &progress,
        gate: &gate,
        seed: settings.seed,
    };
    let consumer_context = ConsumerContext {
        driver,
        topics: &topics,
        subscription_groups: groups,
        progress: &progress,
        gate: &gate,
        stop: &stop,
    };

    let outcome = std::thread::scope(|scope| -> Result<_, RunError> {
        let mut consumer_threads = Vec::new();
        let mut producer_threads = Vec::new();
        let mut spawn_error = None;
        for (index, plans) in plan.consumer_threads.iter().enumerate() {
            let context = &consumer_context;
            let plans = plans.clone();
            match std::thread::Builder::new()
                .name(format!("bench-consumer-{index}"))
                .spawn_scoped(scope, move || run_consumer_thread(context, plans))
            {
                Ok(thread) => consumer_threads.push(thread),
                Err(error) => spawn_error = spawn_error.or(Some(error)),
            }
        }
        for (index, plans) in plan.producer_threads.iter().enumerate() {
            let context = &producer_context;
            let plans = plans.clone();
            match std::thread::Builder::new()
                .name(format!("bench-producer-{index}"))
                .spawn_scoped(scope, move || run_producer_thread(context, plans, index))
            {
                Ok(thread) => producer_threads.push(thread),
                Err(error) => spawn_error = spawn_error.or(Some(error)),
            }
        }
        if spawn_error.is_some() {
            gate.abort();
        }

        let timeline = gate.open(|| {
            Timeline::new(
                now_ns() + LOAD_START_DELAY.as_nanos() as u64,
                settings.warmup_duration,
                settings.test_duration,
            )
        });
        let Some(timeline) = timeline else {
            stop.store(true, Ordering::Release);
            let mut first_error = spawn_error.map(RunError::Thread);
            for thread in consumer_threads {
                match join(thread) {
                    Ok(result) => {
                        if let Some(error) = result.setup_error {
                            first_error = first_error.or(Some(RunError::Driver(error)));
                        }
                    }
                    Err(error) => first_error = first_error.or(Some(error)),
                }
            }
            for thread in producer_threads {
                if let Err(error) = join(thread) {
                    first_error = first_error.or(Some(error));
                }
            }
            return Err(first_error.expect("an aborted start names its failure"));
        };

        report_progress_until_end(&progress, &timeline);
        let producer_results: Result<Vec<ProducerThreadResult>, RunError> =
            producer_threads.into_iter().map(join).collect();
        let expected_by_group = match &producer_results {
            Ok(results) => expected_by_group(&plan, results),
            Err(_) => vec![0; groups],
        };
        let drain_started_ns = now_ns();
        let drain_timed_out = producer_results.is_ok()
            && wait_for_consumers(
                &progress,
                &expected_by_group,
                settings.drain_timeout,
                || consumer_threads.iter().any(|thread| thread.is_finished()),
            );
        let drain_duration = Duration::from_nanos(now_ns() - drain_started_ns);
        stop.store(true, Ordering::Release);
        let consumer_results: Result<Vec<ConsumerThreadResult>, RunError> =
            consumer_threads.into_iter().map(join).collect();
        Ok((
            timeline,
            producer_results?,
            consumer_results?,
            expected_by_group,
            drain_duration,
            drain_timed_out,
        ))
    })?;
    let (timeline, producers, consumers, expected_by_group, drain_duration, drain_timed_out) =
        outcome;
    Ok(merge(
        plan,
        timeline,
        &producers,
        &consumers,
        &expected_by_group,
        &progress,
        drain_duration,
        drain_timed_out,
    ))
}

/// Per subscription group: every message acknowledged to its topic, warm-up included.
fn expected_by_group(plan: &Plan, producers: &[ProducerThreadResult]) -> Vec<u64> {
    let mut by_topic = vec![0u64; plan.topic_names.len()];
    for actor in producers.iter().flat_map(|thread| &thread.actors) {
        by_topic[actor.plan.topic_index as usize] += actor.acknowledged_all_phases;
    }
    (0..plan.subscription_groups)
        .map(|group| by_topic[(group / plan.subscriptions_per_topic) as usize])
        .collect()
}

/// Joins an actor thread; a panic becomes an error naming the thread and its message.
fn join<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> Result<T, RunError> {
    let name = thread.thread().name().unwrap_or("actor").to_string();
    thread.join().map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        RunError::ActorPanicked {
            thread: name,
            message,
        }
    })
}

/// Waits until every group received at least what it should, or a consumer thread ended
/// early (`consumer_ended`: it panicked; nothing more will come). Returns true on timeout.
fn wait_for_consumers(
    progress: &Progress,
    expected_by_group: &[u64],
    timeout: Duration,
    consumer_ended: impl Fn() -> bool,
) -> bool {
    let started_ns = now_ns();
    let mut next_line_ns = started_ns + NANOS_PER_SECOND;
    let mut last = progress.read();
    let mut last_ns = started_ns;
    loop {
        let received = progress.received_by_group();
        if received
            .iter()
            .zip(expected_by_group)
            .all(|(received, expected)| received >= expected)
        {
            return false;
        }
        if consumer_ended() {
            return false;
        }
        let now = now_ns();
        if now - started_ns >= timeout.as_nanos() as u64 {
            return true;
        }
        if now >= next_line_ns {
            let reading = progress.read();
            let missing: u64 = received
                .iter()
                .zip(expected_by_group)
                .map(|(received, expected)| expected.saturating_sub(*received))
                .sum();
            eprintln!(
                "[drain {:>4.1}s] consume {:>9.0} msg/s, {missing} messages still to arrive",
                (now - started_ns) as f64 / 1e9,
                rate(reading.consumed - last.consumed, now - last_ns),
            );
            last = reading;
            last_ns = now;
            next_line_ns += NANOS_PER_SECOND;
        }
        std::thread::sleep(DRAIN_CHECK_INTERVAL);
    }
}

fn rate(count: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    count as f64 * 1e9 / elapsed_ns as f64
}

fn sleep_until(target_ns: u64) {
    let now = now_ns();
    if target_ns > now {
        std::thread::sleep(Duration::from_nanos(target_ns - now));
    }
}

/// Prints one line per second until the timeline's end; resets live latencies after warm-up.
fn report_progress_until_end(progress: &Progress, timeline: &Timeline) {
    let mut measuring = false;
    let mut second = 1u64;
    let mut last = ProgressReading::default();
    let mut last_ns = timeline.load_start_ns;
    loop {
        let tick_ns = timeline.load_start_ns + second * NANOS_PER_SECOND;
        let mut target_ns = tick_ns.min(timeline.end_ns);
        if !measuring {
            target_ns = target_ns.min(timeline.measure_start_ns);
        }
        sleep_until(target_ns);
        let now = now_ns();
        if !measuring && now >= timeline.measure_start_ns {
            measuring = true;
            progress.reset_latencies();
            if timeline.measure_start_ns > timeline.load_start_ns {
                eprintln!("warm-up done: measuring from now on (latencies below restart)");
            }
        }
        if now >= tick_ns {
            let reading = progress.read();
            let phase = if measuring { "measure" } else { "warm-up" };
            eprintln!(
                "[{phase} {:>4}s] publish {:>9.0} msg/s  consume {:>9.0} msg/s  \
                 publish p99 {:>9.1} us  end-to-end p99 {:>9.1} us  (p99 since phase start)",
                second,
                rate(reading.published - last.published, now - last_ns),
                rate(reading.consumed - last.consumed, now - last_ns),
                reading.publish_latency_p99_us,
                reading.end_to_end_latency_p99_us,
            );
            last = reading;
            last_ns = now;
            second += 1;
        }
        if now >= timeline.end_ns {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn merge(
    plan: Plan,
    timeline: Timeline,
    producers: &[ProducerThreadResult],
    consumers: &[ConsumerThreadResult],
    expected_by_group: &[u64],
    progress: &Progress,
    drain_duration: Duration,
    drain_timed_out: bool,
) -> RunResult {
    let mut publish = ProducerStats::default();
    let mut errors = ErrorCounts::default();
    let mut first_error = None;
    let mut measured_by_topic = vec![0u64; plan.topic_names.len()];
    let mut published_all_phases = 0;
    for thread in producers {
        for actor in &thread.actors {
            publish.merge(&actor.stats);
            measured_by_topic[actor.plan.topic_index as usize] += actor.stats.messages;
            published_all_phases += actor.acknowledged_all_phases;
        }
        errors.acks_missing += thread.acks_missing;
        errors.acks_unexpected += thread.acks_unexpected;
        if first_error.is_none() {
            first_error.clone_from(&thread.first_error);
        }
    }
    errors.send_failures = publish.send_failures;

    let mut consume = ConsumerStats::default();
    let mut offset_gaps = 0;
    for thread in consumers {
        for actor in &thread.actors {
            consume.merge(&actor.stats);
        }
        errors.messages_duplicated += thread.duplicates;
        errors.messages_malformed += thread.malformed;
        errors.deliveries_unknown_subscription += thread.unknown_subscription;
        offset_gaps += thread.offset_gaps;
    }

    let received_by_group = progress.received_by_group();
    for (received, expected) in received_by_group.iter().zip(expected_by_group) {
        errors.messages_missing += expected.saturating_sub(*received);
        errors.messages_unexpected += received.saturating_sub(*expected);
    }
    let expected_consume_messages =
        measured_by_topic.iter().sum::<u64>() * plan.subscriptions_per_topic as u64;
    RunResult {
        producer_threads: plan.producer_threads.len(),
        consumer_threads: plan.consumer_threads.len(),
        timeline,
        publish,
        consume,
        expected_consume_messages,
        published_all_phases,
        expected_all_phases: expected_by_group.iter().sum(),
        received_all_phases: received_by_group.iter().sum(),
        offset_gaps,
        errors,
        first_error,
        drain_duration,
        drain_timed_out,
        plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_errors_add_up_to_zero_and_each_kind_counts() {
        let mut errors = ErrorCounts::default();
        assert_eq!(errors.total(), 0);
        errors.send_failures = 1;
        errors.messages_missing = 2;
        errors.messages_duplicated = 3;
        assert_eq!(errors.total(), 6);
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(50, 500_000_000), 100.0);
        assert_eq!(rate(5, 0), 0.0);
    }
}

#[cfg(test)]
mod end_to_end_tests {
    use super::*;
    use crate::driver::embedded::{EmbeddedDriver, EmbeddedSettings};
    use crate::workload::{KeyDistributorType, Workload};

    /// Runs a small keyed workload with two subscriptions on an embedded engine.
    #[test]
    fn a_short_run_delivers_every_measured_message_to_every_subscription() {
        let data = tempfile::tempdir().unwrap();
        let workload = Workload {
            name: "end to end test".into(),
            topics: 2,
            partitions_per_topic: 3,
            key_distributor: KeyDistributorType::KeyRoundRobin,
            message_size_bytes: 64,
            use_randomized_payloads: true,
            random_bytes_ratio: 0.5,
            randomized_payload_pool_size: 4,
            subscriptions_per_topic: 2,
            consumer_per_subscription: 2,
            producers_per_topic: 2,
            producer_rate_messages_per_second: 4_000,
            test_duration_minutes: 1,
            ..Workload::default()
        };
        workload.validate().unwrap();
        let settings = RunSettings {
            loaded: LoadedWorkload {
                workload,
                path: data.path().join("inline.yaml"),
                payload_path: None,
            },
            test_duration: Duration::from_millis(700),
            warmup_duration: Duration::from_millis(200),
            rate_messages_per_second: 4_000,
            producer_threads: 2,
            consumer_threads: 2,
            drain_timeout: Duration::from_secs(30),
            seed: 7,
        };
        let driver = EmbeddedDriver::open(&EmbeddedSettings {
            data_dir: data.path().join("data"),
            durability: rill::Durability::Buffer,
            shards: Some(2),
            pin_shards: false,
            idle_spin: None,
            idempotent: false,
        })
        .unwrap();
        let result = run(&driver, &settings).unwrap();
        driver.shutdown();

        assert_eq!(result.errors, ErrorCounts::default());
        assert!(result.is_complete());
        // 4,000 msg/s for 0.7 s = 2,800, give or take sends late around warm-up's end and
        // the end (a debug build on a busy machine is slow).
        assert!(
            (2_500..=3_100).contains(&result.publish.messages),
            "{}",
            result.publish.messages
        );
        assert_eq!(
            result.expected_consume_messages,
            result.publish.messages * 2
        );
        assert_eq!(result.consume.messages, result.expected_consume_messages);
        assert!(result.published_all_phases > result.publish.messages);
        assert_eq!(
            result.consume.end_to_end_latency_ns.len(),
            result.consume.messages
        );
        assert_eq!(
            result.publish.publish_latency_ns.len(),
            result.publish.messages
        );
    }
}
