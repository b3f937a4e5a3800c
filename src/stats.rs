//! Counters about the loop's work, always on and readable from any thread: the diagnostics
//! watchdog reads them while the loop thread is busy, so they are atomics, not Python state.
//!
//! Only the loop thread writes them, so an increment is a relaxed load and store (a plain
//! memory write on x86), not a locked read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::diagnostics::TimerLag;

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
}
