//! Producer and consumer actors and the threads that run them.
//!
//! An actor is one OMB producer or consumer. A thread runs several actors over one driver
//! handle that it created itself (handles wake their creating thread). Each actor keeps its
//! own histograms and counters; nothing is shared per message. The threads start together
//! through a [`StartGate`]: every thread first makes its handle (and, for consumers, every
//! subscription), then the coordinator fixes the run's [`Timeline`] and lets them all go, so
//! no consumer subscribes after the first message is sent.

pub mod consumer;
pub mod producer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, OnceLock};

use crate::schedule::Timeline;

/// Lines up actor threads and the coordinator at the start of a run.
#[derive(Debug)]
pub struct StartGate {
    /// Every actor thread has its handles; the coordinator may fix the timeline.
    ready: Barrier,
    /// The timeline is fixed (or the run aborted); actors may start.
    go: Barrier,
    timeline: OnceLock<Timeline>,
    aborted: AtomicBool,
}

impl StartGate {
    /// A gate for `actor_threads` threads plus the coordinator.
    pub fn new(actor_threads: usize) -> StartGate {
        StartGate {
            ready: Barrier::new(actor_threads + 1),
            go: Barrier::new(actor_threads + 1),
            timeline: OnceLock::new(),
            aborted: AtomicBool::new(false),
        }
    }

    /// Called by an actor thread once its setup finished (`setup_ok` false when it failed:
    /// the whole run is then aborted). Returns the timeline, or `None` when aborted.
    pub fn arrive(&self, setup_ok: bool) -> Option<Timeline> {
        if !setup_ok {
            self.aborted.store(true, Ordering::SeqCst);
        }
        self.ready.wait();
        self.go.wait();
        if self.aborted.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            *self
                .timeline
                .get()
                .expect("the coordinator fixes it before go"),
        )
    }

    /// Called by the coordinator: waits for every actor thread, fixes the timeline (made
    /// at that moment by `timeline`) and releases them. `None` when some setup failed.
    pub fn open(&self, timeline: impl FnOnce() -> Timeline) -> Option<Timeline> {
        self.ready.wait();
        let opened = if self.aborted.load(Ordering::SeqCst) {
            None
        } else {
            let fixed = timeline();
            self.timeline.set(fixed).expect("a gate opens once");
            Some(fixed)
        };
        self.go.wait();
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_thread_sees_the_timeline_the_coordinator_fixed() {
        let gate = StartGate::new(3);
        let fixed = Timeline::new(10, Duration::from_secs(1), Duration::from_secs(2));
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..3).map(|_| scope.spawn(|| gate.arrive(true))).collect();
            assert_eq!(gate.open(|| fixed), Some(fixed));
            for thread in threads {
                assert_eq!(thread.join().unwrap(), Some(fixed));
            }
        });
    }

    #[test]
    fn one_failed_setup_aborts_every_thread() {
        let gate = StartGate::new(2);
        std::thread::scope(|scope| {
            let good = scope.spawn(|| gate.arrive(true));
            let bad = scope.spawn(|| gate.arrive(false));
            assert_eq!(gate.open(|| unreachable!("no timeline when aborted")), None);
            assert_eq!(good.join().unwrap(), None);
            assert_eq!(bad.join().unwrap(), None);
        });
    }
}
