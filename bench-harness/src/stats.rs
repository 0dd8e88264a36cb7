//! Latency histograms and counters, one set per actor, merged at the end of a run.
//!
//! Latencies are recorded in nanoseconds in auto-resizing HdrHistograms with 3 significant
//! digits (so any reported value is within 0.1% of the true one) and reported in
//! microseconds. Each producer and consumer actor owns its histograms: recording takes no
//! lock and shares no cache line; `merge` adds them up once the actors are done.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant decimal digits every histogram keeps.
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// An empty auto-resizing histogram of nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(HISTOGRAM_SIGNIFICANT_DIGITS).expect("3 significant digits are valid")
}

/// The figures every latency is reported with, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Percentiles of a nanosecond histogram, in microseconds; zeros when it is empty.
    pub fn from_nanoseconds(histogram: &Histogram<u64>) -> LatencySummary {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        let microseconds = |nanoseconds: u64| nanoseconds as f64 / 1_000.0;
        let at = |quantile: f64| microseconds(histogram.value_at_quantile(quantile));
        LatencySummary {
            p50: at(0.5),
            p75: at(0.75),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            p9999: at(0.9999),
            max: microseconds(histogram.max()),
        }
    }
}

/// What one producer actor measured.
#[derive(Clone, Debug)]
pub struct ProducerStats {
    /// Ack time minus intended send time.
    pub publish_latency_ns: Histogram<u64>,
    /// Actual send time minus intended send time.
    pub publish_delay_ns: Histogram<u64>,
    /// Acknowledged messages intended during the measurement.
    pub messages: u64,
    pub bytes: u64,
    /// Sends that failed (any phase).
    pub send_failures: u64,
    /// When the last measured ack arrived (0 when none did).
    pub last_ack_ns: u64,
}

impl Default for ProducerStats {
    fn default() -> ProducerStats {
        ProducerStats {
            publish_latency_ns: new_histogram(),
            publish_delay_ns: new_histogram(),
            messages: 0,
            bytes: 0,
            send_failures: 0,
            last_ack_ns: 0,
        }
    }
}

impl ProducerStats {
    pub fn merge(&mut self, other: &ProducerStats) {
        self.publish_latency_ns
            .add(&other.publish_latency_ns)
            .expect("auto-resizing histograms always add");
        self.publish_delay_ns
            .add(&other.publish_delay_ns)
            .expect("auto-resizing histograms always add");
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.send_failures += other.send_failures;
        self.last_ack_ns = self.last_ack_ns.max(other.last_ack_ns);
    }
}

/// What one consumer actor measured.
#[derive(Clone, Debug)]
pub struct ConsumerStats {
    /// Receive time minus intended send time.
    pub end_to_end_latency_ns: Histogram<u64>,
    /// Messages intended during the measurement that were received.
    pub messages: u64,
    pub bytes: u64,
    /// When the last of those was received (0 when none was).
    pub last_receive_ns: u64,
}

impl Default for ConsumerStats {
    fn default() -> ConsumerStats {
        ConsumerStats {
            end_to_end_latency_ns: new_histogram(),
            messages: 0,
            bytes: 0,
            last_receive_ns: 0,
        }
    }
}

impl ConsumerStats {
    pub fn merge(&mut self, other: &ConsumerStats) {
        self.end_to_end_latency_ns
            .add(&other.end_to_end_latency_ns)
            .expect("auto-resizing histograms always add");
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.last_receive_ns = self.last_receive_ns.max(other.last_receive_ns);
    }
}

/// Records a latency, clamping the (one monotonic clock, so never expected) negative case
/// to 0. `record` grows an auto-resizing histogram; `saturating_record` would clamp to its
/// current range instead, so it is only the fallback for values beyond any range.
pub fn record_latency(histogram: &mut Histogram<u64>, later_ns: u64, earlier_ns: u64) {
    let latency_ns = later_ns.saturating_sub(earlier_ns);
    if histogram.record(latency_ns).is_err() {
        histogram.saturating_record(latency_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 0.001
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(
            LatencySummary::from_nanoseconds(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_reported_in_microseconds() {
        let mut histogram = new_histogram();
        for microseconds in 1..=10_000u64 {
            histogram.record(microseconds * 1_000).unwrap();
        }
        let summary = LatencySummary::from_nanoseconds(&histogram);
        assert!(close(summary.p50, 5_000.0), "{summary:?}");
        assert!(close(summary.p75, 7_500.0), "{summary:?}");
        assert!(close(summary.p95, 9_500.0), "{summary:?}");
        assert!(close(summary.p99, 9_900.0), "{summary:?}");
        assert!(close(summary.p999, 9_990.0), "{summary:?}");
        assert!(close(summary.p9999, 9_999.0), "{summary:?}");
        assert!(close(summary.max, 10_000.0), "{summary:?}");
    }

    #[test]
    fn merged_actor_histograms_report_as_one() {
        let mut fast = ProducerStats::default();
        let mut slow = ProducerStats::default();
        for _ in 0..990 {
            fast.publish_latency_ns.record(100_000).unwrap();
        }
        for _ in 0..10 {
            slow.publish_latency_ns.record(50_000_000).unwrap();
        }
        fast.messages = 990;
        slow.messages = 10;
        slow.send_failures = 2;
        let mut total = ProducerStats::default();
        total.merge(&fast);
        total.merge(&slow);
        assert_eq!(total.messages, 1_000);
        assert_eq!(total.send_failures, 2);
        assert_eq!(total.publish_latency_ns.len(), 1_000);
        let summary = LatencySummary::from_nanoseconds(&total.publish_latency_ns);
        assert!(close(summary.p50, 100.0), "{summary:?}");
        assert!(close(summary.p99, 100.0), "{summary:?}");
        assert!(close(summary.p999, 50_000.0), "{summary:?}");
        assert!(close(summary.max, 50_000.0), "{summary:?}");
    }

    #[test]
    fn merged_consumer_stats_keep_the_latest_receive_time() {
        let mut first = ConsumerStats {
            last_receive_ns: 10,
            messages: 1,
            ..ConsumerStats::default()
        };
        let second = ConsumerStats {
            last_receive_ns: 30,
            messages: 2,
            ..ConsumerStats::default()
        };
        first.merge(&second);
        assert_eq!(first.last_receive_ns, 30);
        assert_eq!(first.messages, 3);
    }

    #[test]
    fn latency_never_goes_negative() {
        let mut histogram = new_histogram();
        record_latency(&mut histogram, 5, 10);
        assert_eq!(histogram.max(), 0);
        record_latency(&mut histogram, 10_000, 1_000);
        assert!(
            histogram.equivalent(histogram.max(), 9_000),
            "{}",
            histogram.max()
        );
        record_latency(&mut histogram, 3_600_000_000_000, 0);
        let hour_ns = histogram.max() as f64;
        assert!(
            (hour_ns / 3.6e12 - 1.0).abs() < 0.001,
            "the histogram grew: {hour_ns}"
        );
    }
}
