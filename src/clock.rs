//! The loop clock: CLOCK_MONOTONIC in seconds, the clock `time.monotonic()` (and so stock
//! asyncio's `loop.time()`) reads on Linux, so user code can mix the two.

use rustix::time::{ClockId, clock_gettime};

/// `time.get_clock_info("monotonic").resolution` on Linux.
pub const RESOLUTION: f64 = 1e-9;

#[inline]
pub fn monotonic() -> f64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A cheap (vDSO, a few nanoseconds, ~4 ms resolution) timestamp in nanoseconds, taken at the
/// start of every callback so a watchdog thread can see how long the current one has run.
#[inline]
pub fn coarse_nanos() -> u64 {
    let ts = clock_gettime(ClockId::MonotonicCoarse);
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = monotonic();
        let b = monotonic();
        assert!(b >= a);
        assert!(a > 0.0);
    }
}
