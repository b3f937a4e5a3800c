//! Loop-lag measurement for the diagnostics mode (`oxloop.diagnostics`): how late timers run.
//!
//! When a due timer moves from the heap to the ready queue, its lateness (now minus its
//! deadline) goes into a fixed histogram of atomics. Recording is off unless diagnostics switch
//! it on; the loop then pays one relaxed load per batch of due timers, nothing per callback.
//!
//! Only the loop thread records; any thread may read (the counters are atomics, as in
//! `stats`). The Python side reads the histogram through `_timer_lag` and switches it with
//! `_set_timer_lag_recording`; both take the loop core, whose stats own the histogram.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::event_loop::LoopCore;
use crate::stats::LoopStats;

/// Upper bounds of the histogram buckets, in seconds; one more bucket holds everything later.
/// Chosen around what users can feel: under a millisecond is healthy, 100 ms is the default
/// blocking threshold, a second is an outage.
pub const LAG_BOUNDS: [f64; 7] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

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

    fn set_recording(&self, on: bool) {
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
}

/// Switches lateness recording on or off for `core`'s timers. Switching it on starts from an
/// empty histogram, so the figures describe the diagnosed run only.
#[pyfunction]
pub fn _set_timer_lag_recording(core: &Bound<'_, LoopCore>, on: bool) {
    let lag = &core.get().stats().timer_lag;
    if on && !lag.is_recording() {
        lag.reset();
    }
    lag.set_recording(on);
}

/// The lateness histogram of `core`'s timers: `{"count", "mean_seconds", "max_seconds",
/// "buckets": [(upper_bound_seconds or None for the last, count), ...]}`.
#[pyfunction]
pub fn _timer_lag<'py>(core: &Bound<'py, LoopCore>) -> PyResult<Bound<'py, PyDict>> {
    let py = core.py();
    let lag = &core.get().stats().timer_lag;
    let count = LoopStats::get(&lag.count);
    let total = LoopStats::get(&lag.total_ns) as f64 * 1e-9;
    let buckets = PyList::empty(py);
    for (index, bucket) in lag.buckets.iter().enumerate() {
        let bound = LAG_BOUNDS.get(index).copied();
        buckets.append((bound, LoopStats::get(bucket)))?;
    }
    let dict = PyDict::new(py);
    dict.set_item("count", count)?;
    dict.set_item(
        "mean_seconds",
        if count == 0 {
            0.0
        } else {
            total / count as f64
        },
    )?;
    dict.set_item("max_seconds", LoopStats::get(&lag.max_ns) as f64 * 1e-9)?;
    dict.set_item("buckets", buckets)?;
    Ok(dict)
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
