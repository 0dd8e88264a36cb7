//! The end-of-run report: a table for people and a JSON document for machines, both with
//! the effective configuration next to the numbers.
//!
//! Units: latencies in microseconds; MB means 2^20 bytes, as OMB reports it. Throughput is
//! measured messages over a window from warm-up's end to the later of the run's end and the
//! last measured ack (publish) or delivery (consume): a pipeline that is still busy after the
//! end, or consumers that fall behind, are charged for the time they took.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::run::{ErrorCounts, RunResult, RunSettings};
use crate::stats::LatencySummary;
use crate::workload::Workload;

const BYTES_PER_MB: f64 = 1_048_576.0;

/// Publish figures of the measurement.
#[derive(Clone, Debug, Serialize)]
pub struct PublishFigures {
    pub messages: u64,
    pub bytes: u64,
    #[serde(rename = "msgs_per_sec")]
    pub messages_per_second: f64,
    #[serde(rename = "mb_per_sec")]
    pub megabytes_per_second: f64,
    #[serde(rename = "latency_us")]
    pub latency_microseconds: LatencySummary,
    #[serde(rename = "window_secs")]
    pub window_seconds: f64,
}

/// Consume figures of the measurement (all subscriptions together).
#[derive(Clone, Debug, Serialize)]
pub struct ConsumeFigures {
    pub messages: u64,
    pub bytes: u64,
    #[serde(rename = "msgs_per_sec")]
    pub messages_per_second: f64,
    #[serde(rename = "mb_per_sec")]
    pub megabytes_per_second: f64,
    #[serde(rename = "window_secs")]
    pub window_seconds: f64,
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub workload_file: String,
    pub driver: String,
    pub driver_settings: BTreeMap<String, String>,
    pub durability: String,
    #[serde(rename = "duration_secs")]
    pub duration_seconds: f64,
    #[serde(rename = "warmup_secs")]
    pub warmup_seconds: f64,
    /// Over all producers; 0 means as fast as possible.
    #[serde(rename = "producer_rate_msgs_per_sec")]
    pub producer_rate_messages_per_second: u64,
    pub producers: u32,
    pub producer_threads: usize,
    pub consumer_threads: usize,
    pub topics: Vec<String>,
    pub publish: PublishFigures,
    #[serde(rename = "publish_delay_us")]
    pub publish_delay_microseconds: LatencySummary,
    pub consume: ConsumeFigures,
    #[serde(rename = "end_to_end_latency_us")]
    pub end_to_end_latency_microseconds: LatencySummary,
    pub expected_consume_messages: u64,
    /// Total of `error_counts`.
    pub errors: u64,
    pub error_counts: ErrorCounts,
    pub first_error: Option<String>,
    /// Every acknowledged message reached every subscription (warm-up included).
    pub complete: bool,
    pub published_all_phases: u64,
    pub expected_consume_all_phases: u64,
    pub consumed_all_phases: u64,
    pub offset_gaps: u64,
    #[serde(rename = "drain_secs")]
    pub drain_seconds: f64,
    pub drain_timed_out: bool,
}

/// Every workload field with OMB's name, `name=value` separated by spaces (name excluded).
fn omb_fields(workload: &Workload) -> String {
    let value = serde_json::to_value(workload).expect("a workload serializes");
    let fields = value.as_object().expect("a workload is an object");
    fields
        .iter()
        .filter(|(name, _)| name.as_str() != "name")
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={other}"),
        })
        .collect::<Vec<String>>()
        .join(" ")
}

fn per_second(count: u64, window: Duration) -> f64 {
    let seconds = window.as_secs_f64();
    if seconds == 0.0 {
        0.0
    } else {
        count as f64 / seconds
    }
}

impl Report {
    pub fn new(
        settings: &RunSettings,
        driver: &str,
        driver_settings: Vec<(&'static str, String)>,
        result: &RunResult,
    ) -> Report {
        let measured = result.measured_duration();
        let publish_window = result.publish_window();
        let consume_window = result.consume_window();
        let driver_settings: BTreeMap<String, String> = driver_settings
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        Report {
            workload: settings.loaded.workload.clone(),
            workload_file: settings.loaded.path.display().to_string(),
            driver: driver.to_string(),
            durability: driver_settings
                .get("durability")
                .cloned()
                .unwrap_or_else(|| "n/a".into()),
            driver_settings,
            duration_seconds: measured.as_secs_f64(),
            warmup_seconds: settings.warmup_duration.as_secs_f64(),
            producer_rate_messages_per_second: settings.rate_messages_per_second,
            producers: result.plan.producers,
            producer_threads: result.producer_threads,
            consumer_threads: result.consumer_threads,
            topics: result.plan.topic_names.clone(),
            publish: PublishFigures {
                messages: result.publish.messages,
                bytes: result.publish.bytes,
                messages_per_second: per_second(result.publish.messages, publish_window),
                megabytes_per_second: per_second(result.publish.bytes, publish_window)
                    / BYTES_PER_MB,
                window_seconds: publish_window.as_secs_f64(),
                latency_microseconds: LatencySummary::from_nanoseconds(
                    &result.publish.publish_latency_ns,
                ),
            },
            publish_delay_microseconds: LatencySummary::from_nanoseconds(
                &result.publish.publish_delay_ns,
            ),
            consume: ConsumeFigures {
                messages: result.consume.messages,
                bytes: result.consume.bytes,
                messages_per_second: per_second(result.consume.messages, consume_window),
                megabytes_per_second: per_second(result.consume.bytes, consume_window)
                    / BYTES_PER_MB,
                window_seconds: consume_window.as_secs_f64(),
            },
            end_to_end_latency_microseconds: LatencySummary::from_nanoseconds(
                &result.consume.end_to_end_latency_ns,
            ),
            expected_consume_messages: result.expected_consume_messages,
            errors: result.errors.total(),
            error_counts: result.errors.clone(),
            first_error: result.first_error.clone(),
            complete: result.is_complete(),
            published_all_phases: result.published_all_phases,
            expected_consume_all_phases: result.expected_all_phases,
            consumed_all_phases: result.received_all_phases,
            offset_gaps: result.offset_gaps,
            drain_seconds: result.drain_duration.as_secs_f64(),
            drain_timed_out: result.drain_timed_out,
        }
    }

    /// Whether the run passed: something was measured, no errors, and every message
    /// consumed as expected.
    pub fn passed(&self) -> bool {
        self.publish.messages > 0 && self.errors == 0 && self.complete
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }

    /// The table printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let workload = &self.workload;
        let rate = if self.producer_rate_messages_per_second == 0 {
            "as fast as backpressure allows (producerRate 0; intended send time = when the \
             previous send returned)"
                .to_string()
        } else {
            format!(
                "{} msg/s over {} producer(s), {:.1} msg/s each, open loop",
                self.producer_rate_messages_per_second,
                self.producers,
                self.producer_rate_messages_per_second as f64 / self.producers as f64
            )
        };
        let payload = if workload.use_randomized_payloads {
            format!(
                "randomized: pool of {}, {:.0}% random bytes",
                workload.randomized_payload_pool_size,
                workload.random_bytes_ratio * 100.0
            )
        } else {
            workload.payload_file.clone().unwrap_or_default()
        };
        let _ = writeln!(out, "\n== rill-bench: {} ==", workload.name);
        let _ = writeln!(out, "configuration");
        let rows = [
            ("workload file", self.workload_file.clone()),
            (
                "topics",
                format!(
                    "{} x {} partitions ({} ...)",
                    workload.topics,
                    workload.partitions_per_topic,
                    self.topics.first().cloned().unwrap_or_default()
                ),
            ),
            (
                "message",
                format!(
                    "{} bytes, payload {payload}, key {:?}",
                    workload.message_size_bytes, workload.key_distributor
                ),
            ),
            (
                "producers",
                format!(
                    "{} per topic on {} thread(s)",
                    workload.producers_per_topic, self.producer_threads
                ),
            ),
            (
                "subscriptions",
                format!(
                    "{} per topic, {} consumer(s) each, on {} thread(s)",
                    workload.subscriptions_per_topic,
                    workload.consumer_per_subscription,
                    self.consumer_threads
                ),
            ),
            ("rate", rate),
            (
                "duration",
                format!(
                    "{:.1} s measured after {:.1} s warm-up (file: {} min + {} min warm-up)",
                    self.duration_seconds,
                    self.warmup_seconds,
                    workload.test_duration_minutes,
                    workload.warmup_duration_minutes
                ),
            ),
            ("driver", self.driver.clone()),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<30}{value}");
        }
        let _ = writeln!(out, "  {:<30}{}", "workload as read", omb_fields(workload));
        for (name, value) in &self.driver_settings {
            let _ = writeln!(out, "  {name:<30}{value}");
        }

        let _ = writeln!(out, "throughput (MB = 2^20 bytes)");
        let _ = writeln!(
            out,
            "  {:<30}{:>12} {:>10} {:>14} {:>10}",
            "", "msg/s", "MB/s", "messages", "window s"
        );
        let _ = writeln!(
            out,
            "  {:<30}{:>12.0} {:>10.2} {:>14} {:>10.3}",
            "publish",
            self.publish.messages_per_second,
            self.publish.megabytes_per_second,
            self.publish.messages,
            self.publish.window_seconds
        );
        let _ = writeln!(
            out,
            "  {:<30}{:>12.0} {:>10.2} {:>14} {:>10.3}   (expected {} messages)",
            "consume",
            self.consume.messages_per_second,
            self.consume.megabytes_per_second,
            self.consume.messages,
            self.consume.window_seconds,
            self.expected_consume_messages
        );

        let _ = writeln!(out, "latency (us)");
        let _ = writeln!(
            out,
            "  {:<30}{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "", "p50", "p75", "p95", "p99", "p99.9", "p99.99", "max"
        );
        for (name, summary) in [
            ("publish latency", &self.publish.latency_microseconds),
            ("publish delay", &self.publish_delay_microseconds),
            ("end-to-end", &self.end_to_end_latency_microseconds),
        ] {
            let _ = writeln!(
                out,
                "  {name:<30}{:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                summary.p50,
                summary.p75,
                summary.p95,
                summary.p99,
                summary.p999,
                summary.p9999,
                summary.max
            );
        }

        let _ = writeln!(
            out,
            "all phases: {} acknowledged, {} of {} expected deliveries received, drain {:.3} s{}",
            self.published_all_phases,
            self.consumed_all_phases,
            self.expected_consume_all_phases,
            self.drain_seconds,
            if self.drain_timed_out {
                " (timed out)"
            } else {
                ""
            }
        );
        if self.passed() {
            let _ = writeln!(out, "result: OK (errors: 0, every message consumed)");
        } else {
            let _ = writeln!(
                out,
                "result: FAILED (errors: {}, consumed {} of {} expected{})",
                self.errors,
                self.consume.messages,
                self.expected_consume_messages,
                if self.publish.messages == 0 {
                    ", no message was measured"
                } else {
                    ""
                }
            );
            let _ = writeln!(out, "  {:?}", self.error_counts);
            if self.offset_gaps > 0 {
                let _ = writeln!(out, "  offset gaps: {}", self.offset_gaps);
            }
            if let Some(error) = &self.first_error {
                let _ = writeln!(out, "  first error: {error}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_lists_every_workload_field_by_its_omb_name() {
        let text = omb_fields(&Workload {
            producer_rate_messages_per_second: 50_000,
            payload_file: Some("payload/payload-1Kb.data".into()),
            ..Workload::default()
        });
        assert!(text.contains("producerRate=50000"), "{text}");
        assert!(
            text.contains("payloadFile=payload/payload-1Kb.data"),
            "{text}"
        );
        assert!(text.contains("consumerBacklogSizeGB=0"), "{text}");
        assert!(text.contains("keyDistributor=NO_KEY"), "{text}");
        assert!(text.contains("warmupDurationMinutes=1"), "{text}");
    }

    #[test]
    fn per_second_divides_by_the_window() {
        assert_eq!(per_second(500, Duration::from_millis(500)), 1_000.0);
        assert_eq!(per_second(500, Duration::ZERO), 0.0);
    }

    #[test]
    fn the_json_uses_the_agreed_keys() {
        let summary = LatencySummary {
            p50: 1.0,
            p75: 2.0,
            p95: 3.0,
            p99: 4.0,
            p999: 5.0,
            p9999: 6.0,
            max: 7.0,
        };
        let figures = PublishFigures {
            messages: 10,
            bytes: 100,
            messages_per_second: 1.0,
            megabytes_per_second: 2.0,
            latency_microseconds: summary,
            window_seconds: 1.0,
        };
        let value = serde_json::to_value(&figures).unwrap();
        for key in [
            "messages",
            "bytes",
            "msgs_per_sec",
            "mb_per_sec",
            "latency_us",
        ] {
            assert!(value.get(key).is_some(), "missing {key}: {value}");
        }
        let latency = &value["latency_us"];
        for key in ["p50", "p75", "p95", "p99", "p999", "p9999", "max"] {
            assert!(latency.get(key).is_some(), "missing {key}: {latency}");
        }
        let workload = serde_json::to_value(Workload::default()).unwrap();
        assert!(
            workload.get("consumerBacklogSizeGB").is_some(),
            "{workload}"
        );
        assert!(workload.get("producerRate").is_some(), "{workload}");
        assert!(workload.get("messageSize").is_some(), "{workload}");
    }
}
