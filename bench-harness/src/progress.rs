//! Live figures for the once-a-second progress line, and the counters the end of a run
//! waits on.
//!
//! Actor threads never lock per message: they count and record locally and hand over a
//! batch at most every `FLUSH_INTERVAL_NS` (and when they finish). The reporting thread
//! reads the counters and takes the histograms' percentiles under a short lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::stats::new_histogram;

/// How often actor threads hand their local progress over.
pub const FLUSH_INTERVAL_NS: u64 = 50_000_000;

/// Shared progress of a run.
#[derive(Debug)]
pub struct Progress {
    /// Acknowledged messages, every phase.
    published: AtomicU64,
    /// Received messages, every phase.
    consumed: AtomicU64,
    /// Publish latency since the current phase began (warm-up, then measurement).
    publish_latency_ns: Mutex<Histogram<u64>>,
    /// End-to-end latency since the current phase began.
    end_to_end_latency_ns: Mutex<Histogram<u64>>,
    /// Per subscription group: messages received, every phase (the drain waits on these).
    received_by_group: Vec<AtomicU64>,
}

/// A thread's progress not yet handed over.
#[derive(Debug)]
pub struct LocalProgress {
    pub published: u64,
    pub consumed: u64,
    pub publish_latency_ns: Histogram<u64>,
    pub end_to_end_latency_ns: Histogram<u64>,
    pub received_by_group: Vec<u64>,
    last_flush_ns: u64,
}

impl LocalProgress {
    pub fn new(subscription_groups: usize) -> LocalProgress {
        LocalProgress {
            published: 0,
            consumed: 0,
            publish_latency_ns: new_histogram(),
            end_to_end_latency_ns: new_histogram(),
            received_by_group: vec![0; subscription_groups],
            last_flush_ns: 0,
        }
    }

    /// Hands the batch over when `FLUSH_INTERVAL_NS` passed since the last time.
    pub fn flush_if_due(&mut self, progress: &Progress, now_ns: u64) {
        if now_ns.saturating_sub(self.last_flush_ns) >= FLUSH_INTERVAL_NS {
            self.flush(progress);
            self.last_flush_ns = now_ns;
        }
    }

    /// Hands the batch over now.
    pub fn flush(&mut self, progress: &Progress) {
        if self.published > 0 {
            progress
                .published
                .fetch_add(self.published, Ordering::Relaxed);
            self.published = 0;
        }
        if self.consumed > 0 {
            progress
                .consumed
                .fetch_add(self.consumed, Ordering::Relaxed);
            self.consumed = 0;
        }
        for (group, received) in self.received_by_group.iter_mut().enumerate() {
            if *received > 0 {
                progress.received_by_group[group].fetch_add(*received, Ordering::Relaxed);
                *received = 0;
            }
        }
        if !self.publish_latency_ns.is_empty() {
            let mut shared = progress.publish_latency_ns.lock().expect("progress lock");
            shared.add(&self.publish_latency_ns).expect("auto-resizing");
            self.publish_latency_ns.reset();
        }
        if !self.end_to_end_latency_ns.is_empty() {
            let mut shared = progress
                .end_to_end_latency_ns
                .lock()
                .expect("progress lock");
            shared
                .add(&self.end_to_end_latency_ns)
                .expect("auto-resizing");
            self.end_to_end_latency_ns.reset();
        }
    }
}

/// A reading of the progress for one line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProgressReading {
    pub published: u64,
    pub consumed: u64,
    pub publish_latency_p99_us: f64,
    pub end_to_end_latency_p99_us: f64,
}

impl Progress {
    pub fn new(subscription_groups: usize) -> Progress {
        Progress {
            published: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            publish_latency_ns: Mutex::new(new_histogram()),
            end_to_end_latency_ns: Mutex::new(new_histogram()),
            received_by_group: (0..subscription_groups)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn read(&self) -> ProgressReading {
        let p99_us = |histogram: &Mutex<Histogram<u64>>| {
            let histogram = histogram.lock().expect("progress lock");
            histogram.value_at_quantile(0.99) as f64 / 1_000.0
        };
        ProgressReading {
            published: self.published.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
            publish_latency_p99_us: p99_us(&self.publish_latency_ns),
            end_to_end_latency_p99_us: p99_us(&self.end_to_end_latency_ns),
        }
    }

    /// Starts the latency histograms afresh (when warm-up ends).
    pub fn reset_latencies(&self) {
        self.publish_latency_ns
            .lock()
            .expect("progress lock")
            .reset();
        self.end_to_end_latency_ns
            .lock()
            .expect("progress lock")
            .reset();
    }

    pub fn received_by_group(&self) -> Vec<u64> {
        self.received_by_group
            .iter()
            .map(|received| received.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_progress_reaches_the_shared_counters_on_flush() {
        let progress = Progress::new(2);
        let mut local = LocalProgress::new(2);
        local.published = 5;
        local.consumed = 3;
        local.received_by_group[1] = 3;
        local.publish_latency_ns.record(2_000).unwrap();
        local.flush_if_due(&progress, FLUSH_INTERVAL_NS);
        let reading = progress.read();
        assert_eq!((reading.published, reading.consumed), (5, 3));
        assert_eq!(progress.received_by_group(), vec![0, 3]);
        assert!((reading.publish_latency_p99_us - 2.0).abs() < 0.01);
        assert_eq!(local.published, 0);
        local.published = 1;
        local.flush_if_due(&progress, FLUSH_INTERVAL_NS + 1);
        assert_eq!(progress.read().published, 5, "not due yet");
        progress.reset_latencies();
        assert_eq!(progress.read().publish_latency_p99_us, 0.0);
    }
}
