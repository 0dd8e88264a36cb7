//! The process clock, the run's timeline and the open-loop send schedule.
//!
//! All times are nanoseconds since one process-wide `Instant` (the clock's base), so a
//! stamp written by a producer thread means the same thing to a consumer thread.
//!
//! Open loop: with a rate, a producer's k-th message has an intended send time fixed in
//! advance, whether or not earlier sends were slow. The `P` producers of a run interleave:
//! producer `p` owns the slots `k × P + p` of one stream whose slot `j` is due at
//! `start + j × 1 s / rate`, so together they send evenly at `rate` (each at `rate / P`)
//! instead of in bursts of `P`. Integer arithmetic keeps the schedule free of drift.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

static CLOCK_BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process clock's base (its first reading).
pub fn now_ns() -> u64 {
    let base = *CLOCK_BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as u64
}

/// The phases of a run, on the process clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Producers start here (warm-up begins).
    pub load_start_ns: u64,
    /// Warm-up ends and measurement begins: only messages first handed to the driver at or
    /// after this count.
    pub measure_start_ns: u64,
    /// Producers send nothing at or after this.
    pub end_ns: u64,
}

impl Timeline {
    pub fn new(load_start_ns: u64, warmup: Duration, test: Duration) -> Timeline {
        let measure_start_ns = load_start_ns + warmup.as_nanos() as u64;
        Timeline {
            load_start_ns,
            measure_start_ns,
            end_ns: measure_start_ns + test.as_nanos() as u64,
        }
    }

    /// Whether a message first handed to the driver at `now_ns` belongs to the measurement.
    pub fn is_measured_at(&self, now_ns: u64) -> bool {
        now_ns >= self.measure_start_ns
    }
}

/// One producer's intended send times at a fixed rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSchedule {
    start_ns: u64,
    /// This producer's place among the run's producers, `0..producers`.
    producer_index: u64,
    producers: u64,
    /// Messages per second over all producers; > 0.
    rate_messages_per_second: u64,
}

impl RateSchedule {
    pub fn new(
        start_ns: u64,
        producer_index: u64,
        producers: u64,
        rate_messages_per_second: u64,
    ) -> RateSchedule {
        assert!(producer_index < producers);
        assert!(rate_messages_per_second > 0);
        RateSchedule {
            start_ns,
            producer_index,
            producers,
            rate_messages_per_second,
        }
    }

    /// When this producer's `message_index`-th message is due.
    pub fn intended_send_ns(&self, message_index: u64) -> u64 {
        let slot = message_index as u128 * self.producers as u128 + self.producer_index as u128;
        let offset_ns = slot * NANOS_PER_SECOND / self.rate_messages_per_second as u128;
        self.start_ns + offset_ns as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_producer_at_fifty_thousand_per_second_sends_every_twenty_microseconds() {
        let schedule = RateSchedule::new(1_000, 0, 1, 50_000);
        assert_eq!(schedule.intended_send_ns(0), 1_000);
        assert_eq!(schedule.intended_send_ns(1), 21_000);
        assert_eq!(schedule.intended_send_ns(50_000), 1_000 + 1_000_000_000);
    }

    #[test]
    fn producers_interleave_into_one_even_stream_at_the_total_rate() {
        let producers = 3;
        let schedules: Vec<RateSchedule> = (0..producers)
            .map(|index| RateSchedule::new(0, index, producers, 30_000))
            .collect();
        let mut times: Vec<u64> = schedules
            .iter()
            .flat_map(|schedule| (0..1_000).map(|k| schedule.intended_send_ns(k)))
            .collect();
        times.sort_unstable();
        for (slot, time) in times.iter().enumerate() {
            assert_eq!(*time, slot as u64 * 1_000_000_000 / 30_000);
        }
        let first = &schedules[0];
        assert_eq!(
            first.intended_send_ns(10_000) - first.intended_send_ns(0),
            1_000_000_000
        );
    }

    #[test]
    fn a_rate_that_does_not_divide_a_second_does_not_drift() {
        let schedule = RateSchedule::new(0, 0, 1, 3);
        assert_eq!(schedule.intended_send_ns(1), 333_333_333);
        assert_eq!(schedule.intended_send_ns(2), 666_666_666);
        assert_eq!(schedule.intended_send_ns(3), 1_000_000_000);
        assert_eq!(
            schedule.intended_send_ns(3_000_000),
            1_000_000 * 1_000_000_000
        );
    }

    #[test]
    fn a_huge_rate_and_index_do_not_overflow() {
        let schedule = RateSchedule::new(0, 9, 10, 10_000_000);
        let an_hour_of_messages = 3_600 * 1_000_000;
        assert_eq!(
            schedule.intended_send_ns(an_hour_of_messages),
            (an_hour_of_messages * 10 + 9) * 100
        );
    }

    #[test]
    fn the_timeline_measures_from_the_end_of_warm_up() {
        let timeline = Timeline::new(5, Duration::from_secs(2), Duration::from_secs(10));
        assert_eq!(timeline.measure_start_ns, 2_000_000_005);
        assert_eq!(timeline.end_ns, 12_000_000_005);
        assert!(!timeline.is_measured_at(2_000_000_004));
        assert!(timeline.is_measured_at(2_000_000_005));
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let first = now_ns();
        let second = now_ns();
        assert!(second >= first);
    }
}
