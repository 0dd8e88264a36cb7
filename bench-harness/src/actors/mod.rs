//! Producer and consumer actors and the threads that run them.
//!
//! An actor is one OMB producer or consumer. A thread runs several actors over one driver
//! handle that it created itself (handles wake their creating thread). Each actor keeps its
//! own histograms and counters; nothing is shared per message. The threads start together
//! through a [`StartGate`]: every thread first makes its handle (and, for consumers, every
//! subscription), then the coordinator fixes the run's [`Timeline`] and lets them all go, so
//! no consumer subscribes after the first message is sent.
//!
//! Actor threads that panic (for instance on a driver assertion) are reported by the
//! coordinator as a failed run, not as a hang: see `run`.

pub mod consumer;
pub mod producer;

use std::sync::{Condvar, Mutex};

use crate::schedule::Timeline;

/// Lines up actor threads and the coordinator at the start of a run.
#[derive(Debug)]
pub struct StartGate {
    actor_threads: usize,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// Actor threads that finished their setup, `0..=actor_threads`.
    arrived: usize,
    /// Set when the coordinator opens the gate.
    timeline: Option<Timeline>,
    /// Some setup failed, or the coordinator gave up: nobody runs.
    aborted: bool,
}

impl StartGate {
    /// A gate for `actor_threads` threads plus the coordinator.
    pub fn new(actor_threads: usize) -> StartGate {
        StartGate {
            actor_threads,
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        }
    }

    /// Called by an actor thread once its setup finished (`setup_ok` false when it failed:
    /// the whole run is then aborted). Waits for the coordinator; returns the timeline, or
    /// `None` when the run was aborted.
    pub fn arrive(&self, setup_ok: bool) -> Option<Timeline> {
        let mut state = self.state.lock().expect("gate lock");
        state.arrived += 1;
        assert!(state.arrived <= self.actor_threads);
        if !setup_ok {
            state.aborted = true;
        }
        self.changed.notify_all();
        let state = self
            .changed
            .wait_while(state, |state| state.timeline.is_none() && !state.aborted)
            .expect("gate lock");
        if state.aborted {
            None
        } else {
            state.timeline
        }
    }

    /// Called by the coordinator: waits for every actor thread, fixes the timeline (made
    /// at that moment by `timeline`) and releases them. `None` when some setup failed.
    pub fn open(&self, timeline: impl FnOnce() -> Timeline) -> Option<Timeline> {
        let state = self.state.lock().expect("gate lock");
        let mut state = self
            .changed
            .wait_while(state, |state| {
                state.arrived < self.actor_threads && !state.aborted
            })
            .expect("gate lock");
        if state.aborted {
            return None;
        }
        let fixed = timeline();
        state.timeline = Some(fixed);
        self.changed.notify_all();
        Some(fixed)
    }

    /// Called by the coordinator when it cannot start the run (e.g. a thread did not spawn):
    /// every actor thread at the gate, or arriving later, returns without running.
    pub fn abort(&self) {
        self.state.lock().expect("gate lock").aborted = true;
        self.changed.notify_all();
    }
}

/// Asks the kernel to wake this thread's timed waits on time instead of up to 50 µs late
/// (the default timer slack): an open-loop producer's publish delay is mostly that lateness.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
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
    fn an_aborted_gate_releases_threads_that_wait_and_that_come_later() {
        let gate = StartGate::new(2);
        std::thread::scope(|scope| {
            let early = scope.spawn(|| gate.arrive(true));
            gate.abort();
            assert_eq!(early.join().unwrap(), None);
            assert_eq!(gate.arrive(true), None);
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
