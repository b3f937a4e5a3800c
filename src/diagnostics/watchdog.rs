//! The blocking-the-loop watchdog of the diagnostics mode: a thread that notices a callback (or
//! task step) running past a threshold while it still runs, and asks Python to look at it.
//!
//! The loop thread already publishes, for free, when its current callback started
//! (`LoopStats::callback_started_ns`, 0 between callbacks) and how many callbacks it has run.
//! The watchdog thread samples those two atomics a few times per threshold. An *episode* is one
//! callback seen running past the threshold, identified by (start time, callbacks run): either
//! changes when the callback returns. For each episode the thread calls Python twice:
//! `on_block(episode, seconds_so_far, still_running)` once, as soon as it sees it (Python then
//! captures the loop thread's stack), and `on_end(episode, seconds)` when it sees it over.
//!
//! Invariants:
//! - No Rust lock is held while attaching to Python (the stop mutex guards a bool and is
//!   released before anything else happens), so the GIL and the lock cannot deadlock.
//! - `stop()` joins the thread with the GIL released: the thread may be waiting for the GIL
//!   to deliver a report, and gets it while `stop()` waits.
//! - Nothing runs unless diagnostics are on: the thread is created only by `Watchdog(...)`.
//! - The thread attaches through `Python::try_attach`, so it never enters an interpreter that
//!   is shutting down; oxloop also stops every watchdog from an `atexit` hook.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::call::PyCallArgs;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::clock;
use crate::event_loop::LoopCore;
use crate::gil_cell::GilCell;
use crate::stats::LoopStats;

/// Sampling period while nothing is blocked, as a fraction of the threshold: a block is seen
/// at most a quarter of the threshold late.
const IDLE_TICKS_PER_THRESHOLD: u64 = 4;
const MIN_TICK: Duration = Duration::from_millis(1);
const MAX_IDLE_TICK: Duration = Duration::from_millis(50);
/// Sampling period during an episode: the end (and so the final duration) is seen this late at
/// most, on top of the ~4 ms resolution of the coarse clock the loop stamps callbacks with.
const BUSY_TICK: Duration = Duration::from_millis(5);

struct Shared {
    stats: Arc<LoopStats>,
    threshold_ns: u64,
    stopped: Mutex<bool>,
    wake: Condvar,
    /// Total duration of the finished episodes, in nanoseconds.
    blocked_ns: AtomicU64,
    episodes: AtomicU64,
}

impl Shared {
    /// Sleeps for `tick` unless asked to stop; true when asked to stop. A poisoned mutex (a
    /// panic elsewhere while holding it) also stops the thread: it cannot be trusted any more.
    fn sleep_unless_stopped(&self, tick: Duration) -> bool {
        let Ok(guard) = self.stopped.lock() else {
            return true;
        };
        match self
            .wake
            .wait_timeout_while(guard, tick, |stopped| !*stopped)
        {
            Ok((guard, _)) => *guard,
            Err(_) => true,
        }
    }

    fn request_stop(&self) {
        if let Ok(mut stopped) = self.stopped.lock() {
            *stopped = true;
        }
        self.wake.notify_all();
    }

    /// (start stamp, callbacks run): the identity of the callback running now.
    fn current_callback(&self) -> (u64, u64) {
        (
            LoopStats::get(&self.stats.callback_started_ns),
            LoopStats::get(&self.stats.callbacks_run),
        )
    }
}

#[derive(Clone, Copy)]
struct Episode {
    id: u64,
    started_ns: u64,
    callbacks_run: u64,
}

fn seconds(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// Calls `callback(*args)`; a Python error is reported as unraisable (there is no caller to
/// give it to on this thread), never dropped silently.
fn call_python<'py>(py: Python<'py>, callback: &Py<PyAny>, args: impl PyCallArgs<'py>) {
    let callback = callback.bind(py);
    if let Err(err) = callback.call1(args) {
        err.write_unraisable(py, Some(callback));
    }
}

fn watch(shared: Arc<Shared>, on_block: Py<PyAny>, on_end: Py<PyAny>) {
    let idle_tick = Duration::from_nanos(shared.threshold_ns / IDLE_TICKS_PER_THRESHOLD)
        .clamp(MIN_TICK, MAX_IDLE_TICK);
    let busy_tick = BUSY_TICK.min(idle_tick);
    let mut episode: Option<Episode> = None;
    let mut next_id: u64 = 1;
    loop {
        let tick = if episode.is_some() {
            busy_tick
        } else {
            idle_tick
        };
        let stopping = shared.sleep_unless_stopped(tick);
        let (started_ns, callbacks_run) = shared.current_callback();
        let now = clock::coarse_nanos();
        if let Some(open) = episode {
            let same = open.started_ns == started_ns && open.callbacks_run == callbacks_run;
            if same && !stopping {
                continue;
            }
            // Over (or the loop is closing, which it cannot do inside a callback).
            let duration = now.saturating_sub(open.started_ns);
            LoopStats::add(&shared.blocked_ns, duration);
            episode = None;
            let delivered = Python::try_attach(|py| {
                call_python(py, &on_end, (open.id, seconds(duration)));
            });
            if delivered.is_none() {
                break; // the interpreter is shutting down
            }
        }
        if stopping {
            break;
        }
        if started_ns == 0 || now.saturating_sub(started_ns) < shared.threshold_ns {
            continue;
        }
        let open = Episode {
            id: next_id,
            started_ns,
            callbacks_run,
        };
        next_id += 1;
        LoopStats::add(&shared.episodes, 1);
        episode = Some(open);
        let delivered = Python::try_attach(|py| {
            // The loop thread needs the GIL to return from a Python callback, so while we hold
            // it the callback cannot end: if it is still the same one now, the stack Python
            // captures is the blocked callback's. If it already ended, it held the GIL until it
            // returned (a long C call) and there is no stack left to see.
            let still_running = shared.current_callback() == (started_ns, callbacks_run);
            let so_far = clock::coarse_nanos().saturating_sub(started_ns);
            call_python(py, &on_block, (open.id, seconds(so_far), still_running));
        });
        if delivered.is_none() {
            break;
        }
    }
    // Release the Python callbacks while attached; if the interpreter is shutting down they
    // are left to pyo3's deferred release instead.
    Python::try_attach(move |_py| drop((on_block, on_end)));
}

/// The watchdog of one loop; `Watchdog(core, threshold_seconds, on_block, on_end)` starts its
/// thread, `stop()` ends it. See the module doc for when the callbacks are called.
#[pyclass(frozen, module = "oxloop._oxloop")]
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: GilCell<Option<JoinHandle<()>>>,
}

#[pymethods]
impl Watchdog {
    #[new]
    fn new(
        core: &Bound<'_, LoopCore>,
        threshold_seconds: f64,
        on_block: Py<PyAny>,
        on_end: Py<PyAny>,
    ) -> PyResult<Self> {
        if !(threshold_seconds.is_finite() && threshold_seconds > 0.0) {
            return Err(PyValueError::new_err(format!(
                "blocking threshold must be a positive number of seconds, got {threshold_seconds}"
            )));
        }
        let shared = Arc::new(Shared {
            stats: Arc::clone(core.get().stats()),
            threshold_ns: (threshold_seconds * 1e9) as u64,
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            blocked_ns: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("oxloop-watchdog".to_owned())
            .spawn(move || watch(for_thread, on_block, on_end))
            .map_err(|err| {
                PyRuntimeError::new_err(format!("oxloop: cannot start the watchdog thread: {err}"))
            })?;
        Ok(Self {
            shared,
            thread: GilCell::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it (an episode still open is reported as ended first).
    /// Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.request_stop();
        let Some(thread) = self.thread.with(py, Option::take)? else {
            return Ok(());
        };
        // Without the GIL: the thread may be waiting for it to deliver a last report.
        match py.detach(|| thread.join()) {
            Ok(()) => Ok(()),
            Err(_) => Err(PyRuntimeError::new_err(
                "oxloop: the watchdog thread panicked",
            )),
        }
    }

    /// True until `stop()` has joined the thread.
    #[getter]
    fn running(&self, py: Python<'_>) -> PyResult<bool> {
        self.thread.with(py, |thread| thread.is_some())
    }

    /// Total duration of the episodes seen to end, in seconds.
    #[getter]
    fn blocked_seconds(&self) -> f64 {
        seconds(LoopStats::get(&self.shared.blocked_ns))
    }

    /// Number of episodes seen (callbacks that ran past the threshold).
    #[getter]
    fn episodes(&self) -> u64 {
        LoopStats::get(&self.shared.episodes)
    }

    #[getter]
    fn threshold_seconds(&self) -> f64 {
        seconds(self.shared.threshold_ns)
    }
}

impl Drop for Watchdog {
    /// Dropped without `stop()` (the loop was never closed): tell the thread to end, without
    /// joining, since a drop may run with the GIL held while the thread waits for it.
    fn drop(&mut self) {
        self.shared.request_stop();
    }
}
