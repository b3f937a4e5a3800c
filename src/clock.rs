//! The loop clock: CLOCK_MONOTONIC in seconds, the clock `time.monotonic()` (and so stock
//! asyncio's `loop.time()`) reads on Linux, so user code can mix the two.
//!
//! Read through glibc rather than rustix's raw vDSO lookup: the latter crashes under valgrind,
//! which users (and our instruction-count benchmarks) run the loop under.

/// `time.get_clock_info("monotonic").resolution` on Linux.
pub const RESOLUTION: f64 = 1e-9;

#[inline]
fn read(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the monotonic clocks always exist on Linux,
    // so the call cannot fail (and on failure `ts` stays zero, which is harmless).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

#[inline]
pub fn monotonic() -> f64 {
    let ts = read(libc::CLOCK_MONOTONIC);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A cheap (vDSO, a few nanoseconds, ~4 ms resolution) timestamp in nanoseconds, taken at the
/// start of every callback so a watchdog thread can see how long the current one has run.
#[inline]
pub fn coarse_nanos() -> u64 {
    let ts = read(libc::CLOCK_MONOTONIC_COARSE);
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
        assert!(coarse_nanos() > 0);
    }
}
