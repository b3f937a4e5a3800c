//! Counters about the loop's work, always on and readable from any thread: the diagnostics
//! watchdog reads them while the loop thread is busy, so they are atomics, not Python state.
//! Also the histogram of timer lateness, which the loop records while diagnostics ask for it
//! (`diagnostics/timer_lag.rs` switches it and reads it out).
//!
//! Only the loop thread writes them, so an increment is a relaxed load and store (a plain
//! memory write on x86), not a locked read-modify-write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

#[derive(Default)]
pub struct LoopStats {
    pub iterations: AtomicU64,
    pub callbacks_run: AtomicU64,
    pub timers_fired: AtomicU64,
    pub io_events: AtomicU64,
    /// Nanoseconds spent waiting in the poller.
    pub poll_wait_ns: AtomicU64,
    /// Coarse monotonic nanoseconds at which the running callback started; 0 between callbacks.
    pub callback_started_ns: AtomicU64,
    /// Timer lateness, recorded only while diagnostics are on.
    pub timer_lag: TimerLag,
}

/// What is waiting in the loop right now, for `LoopStats::to_dict`.
pub struct Backlog {
    pub ready: usize,
    pub timers: usize,
    pub timers_cancelled: usize,
    pub fds: usize,
}

impl LoopStats {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters and `backlog` as `loop.stats()` returns them.
    pub fn to_dict<'py>(&self, py: Python<'py>, backlog: Backlog) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("iterations", Self::get(&self.iterations))?;
        dict.set_item("callbacks_run", Self::get(&self.callbacks_run))?;
        dict.set_item("timers_fired", Self::get(&self.timers_fired))?;
        dict.set_item("io_events", Self::get(&self.io_events))?;
        dict.set_item(
            "poll_wait_seconds",
            Self::get(&self.poll_wait_ns) as f64 * 1e-9,
        )?;
        dict.set_item("ready", backlog.ready)?;
        dict.set_item("timers", backlog.timers)?;
        dict.set_item("timers_cancelled", backlog.timers_cancelled)?;
        dict.set_item("fds", backlog.fds)?;
        Ok(dict)
    }
}

/// Upper bounds of the histogram buckets, in seconds; one more bucket holds everything later.
/// Chosen around what users can feel: under a millisecond is healthy, 100 ms is the default
/// blocking threshold, a second is an outage.
pub const LAG_BOUNDS: [f64; 7] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// How late timers ran: when a due timer moves from the heap to the ready queue, its lateness
/// (now minus its deadline) goes into a fixed histogram of atomics. Off unless diagnostics
/// switch it on; the loop then pays one relaxed load per batch of due timers.
#[derive(Default)]
pub struct TimerLag {
    recording: AtomicBool,
    buckets: [AtomicU64; LAG_BOUNDS.len() + 1],
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl TimerLag {
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Switches recording on or off. Switching it on starts from an empty histogram, so the
    /// figures describe the diagnosed run only.
    pub fn set_recording(&self, on: bool) {
        if on && !self.is_recording() {
            self.reset();
        }
        self.recording.store(on, Ordering::Relaxed);
    }

    /// Records one timer that ran `seconds` after its deadline (negative counts as on time:
    /// the loop queues timers due within the clock resolution).
    pub fn record(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let index = LAG_BOUNDS
            .iter()
            .position(|&bound| seconds < bound)
            .unwrap_or(LAG_BOUNDS.len());
        LoopStats::add(&self.buckets[index], 1);
        LoopStats::add(&self.count, 1);
        let ns = (seconds * 1e9) as u64;
        LoopStats::add(&self.total_ns, ns);
        if ns > LoopStats::get(&self.max_ns) {
            self.max_ns.store(ns, Ordering::Relaxed);
        }
    }

    fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.total_ns.store(0, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
    }

    /// `{"count", "mean_seconds", "max_seconds", "buckets": [(upper_bound_seconds or None
    /// for the last, count), ...]}`.
    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let count = LoopStats::get(&self.count);
        let total = LoopStats::get(&self.total_ns) as f64 * 1e-9;
        let buckets = PyList::empty(py);
        for (index, bucket) in self.buckets.iter().enumerate() {
            let bound = LAG_BOUNDS.get(index).copied();
            buckets.append((bound, LoopStats::get(bucket)))?;
        }
        let dict = PyDict::new(py);
        dict.set_item("count", count)?;
        let mean = if count == 0 {
            0.0
        } else {
            total / count as f64
        };
        dict.set_item("mean_seconds", mean)?;
        dict.set_item("max_seconds", LoopStats::get(&self.max_ns) as f64 * 1e-9)?;
        dict.set_item("buckets", buckets)?;
        Ok(dict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_lands_in_the_right_bucket() {
        let lag = TimerLag::default();
        lag.record(-0.5);
        lag.record(0.0004);
        lag.record(0.02);
        lag.record(3.0);
        let counts: Vec<u64> = lag.buckets.iter().map(LoopStats::get).collect();
        assert_eq!(counts, vec![2, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(LoopStats::get(&lag.count), 4);
        assert_eq!(LoopStats::get(&lag.max_ns), 3_000_000_000);
        lag.reset();
        assert_eq!(LoopStats::get(&lag.count), 0);
        assert!(lag.buckets.iter().all(|b| LoopStats::get(b) == 0));
    }
}
