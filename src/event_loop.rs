//! The loop core: the ready queue, the timer heap and `run_once`, the one place callbacks run,
//! and the loop's Python-visible methods. The Python class `oxloop.Loop` subclasses `LoopCore`
//! and adds what runs once per loop (lifecycle, executor, exception handler, signals).
//!
//! A callback's path: `call_soon` (entered through `fastcall.rs`) wraps it in a `Handle`
//! (`handles.rs`) and pushes it on the ready queue; `run_ready` pops it and calls it in its
//! context. Timers wait in the heap (`timers.rs`) until `queue_due_timers` moves them to the
//! ready queue; fd events come from the io table (`io_table.rs`), which owns the poller.
//!
//! Rust because every callback, timer and I/O event passes through here. `run_once` follows
//! the phases of stock asyncio's `_run_once`, in the same order, so callback order matches:
//! 1. drop cancelled timers (all of them when they are most of the heap);
//! 2. compute the poll timeout: zero if callbacks are ready or the loop is stopping, else the
//!    time to the earliest timer, else forever;
//! 3. poll, with the GIL released when the wait can block, and queue the I/O callbacks;
//! 4. queue the timers that are due;
//! 5. run exactly the callbacks queued so far; those they schedule wait for the next iteration;
//! 6. then what the callbacks left for the end of the iteration (`IoTable::begin_iteration`):
//!    the TLS records they wrote, sent in one piece per connection.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::clock;
use crate::gil_cell::GilCell;
use crate::handles::{CallbackSlot, Handle, LoopHeld, TimerHandle, check_callable, track_handle};
use crate::io_table::{IoTable, IoTarget, Side, fileobj_number, fileobj_to_fd, int_to_fd};
use crate::ready::Ready;
use crate::stats::{Backlog, LoopStats};
use crate::tasks::{self, TaskFactory};
use crate::timers::TimerHeap;
use crate::transport::{TransportCore, TransportIo, tls};

/// asyncio's default for `slow_callback_duration`.
const DEFAULT_SLOW_CALLBACK_SECS: f64 = 0.1;

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

fn current_thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions. Python's threading.get_ident() returns the
    // same value, so the two can be compared.
    unsafe { libc::pthread_self() as u64 }
}

#[pyclass(subclass, frozen, module = "oxloop._oxloop")]
pub struct LoopCore {
    ready: GilCell<VecDeque<Ready>>,
    timers: GilCell<TimerHeap<LoopHeld<TimerHandle>>>,
    /// The fd table and the poller, shared with the loop's transports.
    io: TransportIo,
    stats: Arc<LoopStats>,
    closed: AtomicBool,
    running: AtomicBool,
    stopping: AtomicBool,
    debug: AtomicBool,
    /// Set while `time` is replaced on the instance (`mock.patch.object(loop, "time")`) or
    /// overridden by a subclass: scheduling and timer expiry then read `loop.time()` as stock
    /// asyncio's `call_later` and `_run_once` do, so tests that steer the clock see timers fire.
    python_clock: AtomicBool,
    /// True while the loop thread waits in the poller with the GIL released. Set and cleared
    /// with the GIL held, so a thread that queues a callback (also with the GIL) either sees
    /// it set and wakes the poller, or queued before the loop computed its timeout.
    sleeping: AtomicBool,
    slow_callback_duration: AtomicU64,
    /// `pthread_self()` of the thread running the loop; 0 when not running.
    thread_id: AtomicU64,
    task_factory: TaskFactory,
}

impl LoopCore {
    /// The fd table and the poller.
    pub(crate) fn io(&self) -> &TransportIo {
        &self.io
    }

    /// The counters, shared with the diagnostics watchdog thread.
    pub(crate) fn stats(&self) -> &Arc<LoopStats> {
        &self.stats
    }

    /// The loop stopped: every handle it holds goes back under the cycle collector, so that a
    /// loop dropped unclosed with work pending is collected (see `handles.rs`).
    fn track_held(&self, py: Python<'_>) -> PyResult<()> {
        self.ready
            .with(py, |ready| ready.iter().for_each(|r| r.track(py)))?;
        self.timers
            .with(py, |t| t.iter().for_each(|t| t.track(py)))?;
        self.io.track(py)
    }

    /// asyncio's `_ensure_fd_no_transport`: an fd owned by an open transport is off limits.
    fn ensure_fd_no_transport(
        &self,
        py: Python<'_>,
        fd: RawFd,
        shown: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Some(owner) = self.io.owner(py, fd)? else {
            return Ok(());
        };
        if owner.get().lends_fd(py)? {
            return Ok(());
        }
        let transport = owner.getattr(py, "_transport")?;
        if transport.is_none(py) || transport.call_method0(py, "is_closing")?.is_truthy(py)? {
            return Ok(());
        }
        Err(PyRuntimeError::new_err(format!(
            "File descriptor {} is used by transport {}",
            shown.repr()?,
            transport.bind(py).repr()?
        )))
    }

    #[inline]
    pub(crate) fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// asyncio's debug-mode `_check_thread`: non-thread-safe calls from another thread.
    fn check_thread(&self) -> PyResult<()> {
        let owner = self.thread_id.load(Ordering::Relaxed);
        if owner != 0 && owner != current_thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Argument checks shared by the scheduling methods; debug mode adds asyncio's full set.
    #[inline]
    fn check_schedule(
        &self,
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &'static str,
        thread_bound: bool,
    ) -> PyResult<bool> {
        self.check_closed()?;
        let debug = self.debug.load(Ordering::Relaxed);
        if debug {
            if thread_bound {
                self.check_thread()?;
            }
            slf.call_method1("_check_callback", (callback, method))?;
        } else {
            check_callable(callback, method)?;
        }
        Ok(debug)
    }

    fn new_slot(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        debug: bool,
    ) -> PyResult<CallbackSlot> {
        let py = slf.py();
        let source_traceback = if debug {
            Some(slf.call_method0("_extract_stack")?.unbind())
        } else {
            None
        };
        CallbackSlot::new(
            py,
            callback.unbind(),
            args.unbind(),
            context.map(Bound::unbind),
            source_traceback,
            slf.get().running.load(Ordering::Relaxed),
        )
    }

    fn push_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        debug: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let slot = Self::new_slot(slf, callback, args, context, debug)?;
        let queued = LoopHeld::new(py, Handle { slot }, slf.get().is_running())?;
        let handle = queued.object(py);
        slf.get()
            .ready
            .with(py, |q| q.push_back(Ready::Soon(queued)))?;
        if !slf.get().is_running() {
            // From another thread, the loop may have stopped while this handle was made (a
            // collection inside an allocation runs Python code, which lets the loop thread take
            // the GIL): its stop did not see the handle, hidden from the collector as a running
            // loop's handles are, so it goes back under the collector here.
            track_handle(py, &handle);
        }
        Ok(handle)
    }

    fn wake_if_sleeping(&self, py: Python<'_>) -> PyResult<()> {
        if self.sleeping.load(Ordering::SeqCst) {
            self.io.wake(py)?;
        }
        Ok(())
    }

    fn add_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        side: Side,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // asyncio asks a file object for its fileno() before it checks the loop is open.
        let number = fileobj_number(fd)?;
        this.check_closed()?;
        let fd_number = int_to_fd(&number)?;
        this.ensure_fd_no_transport(py, fd_number, fd)?;
        let method = match side {
            Side::Read => "add_reader",
            Side::Write => "add_writer",
        };
        check_callable(&callback, method)?;
        let slot = Self::new_slot(slf, callback, args, None, false)?;
        let handle = LoopHeld::new(py, Handle { slot }, this.is_running())?;
        let fileobj = fd.cast::<PyInt>().is_err().then_some(fd);
        this.io
            .watch(py, fd_number, side, IoTarget::Callback(handle), fileobj)
    }

    fn remove_io(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, side: Side) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Relaxed) {
            fileobj_number(fd)?; // asyncio's check of a file object comes first
            return Ok(false);
        }
        let fd_number = match fileobj_to_fd(fd) {
            Ok(fd_number) => {
                this.ensure_fd_no_transport(py, fd_number, fd)?;
                fd_number
            }
            // No fd number that large can be watched.
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
                return Ok(false);
            }
            // A socket closed while watched answers -1 to fileno(); asyncio's selector still
            // finds the registration made with that same object, and so do we. An object whose
            // fileno() fails is not looked for: asyncio's `_ensure_fd_no_transport` rejects it.
            Err(err) => {
                let answers_fileno = fd.cast::<PyInt>().is_err()
                    && fd
                        .call_method0("fileno")
                        .is_ok_and(|n| n.cast::<PyInt>().is_ok());
                let found = if answers_fileno {
                    this.io.fd_registered_with(fd)?
                } else {
                    None
                };
                found.ok_or(err)?
            }
        };
        this.io.unwatch_if(py, fd_number, side, |_| true)
    }

    /// The loop's notion of now: the monotonic clock, or `loop.time()` when that is replaced.
    fn now(&self, slf: &Bound<'_, Self>) -> PyResult<f64> {
        if self.python_clock.load(Ordering::Relaxed) {
            slf.call_method0(pyo3::intern!(slf.py(), "time"))?
                .extract::<f64>()
        } else {
            Ok(clock::monotonic())
        }
    }

    /// Phases 1 and 2: housekeeping of the timer heap and the poll timeout.
    fn poll_timeout(&self, slf: &Bound<'_, Self>) -> PyResult<Option<f64>> {
        let py = slf.py();
        let mut garbage = Vec::new();
        let next_deadline = self.timers.with(py, |t| t.purge(&mut garbage))?;
        drop(garbage);
        let has_ready = self.ready.with(py, |q| !q.is_empty())?;
        if has_ready || self.stopping.load(Ordering::Relaxed) {
            return Ok(Some(0.0));
        }
        match next_deadline {
            Some(when) => Ok(Some((when - self.now(slf)?).max(0.0))),
            None => Ok(None),
        }
    }

    /// Phase 3: waits for I/O and queues what the ready fds ask to run.
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let (events, waited_ns) =
            self.io
                .poll(py, timeout, &self.sleeping, &self.ready, |event| {
                    Ready::from_io(py, event)
                })?;
        LoopStats::add(&self.stats.io_events, events as u64);
        LoopStats::add(&self.stats.poll_wait_ns, waited_ns);
        Ok(())
    }

    /// Phase 4: queues the timers that are due.
    fn queue_due_timers(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut garbage = Vec::new();
        let has_timers = self.timers.with(py, |timers| timers.len() != 0)?;
        if !has_timers {
            return Ok(());
        }
        let end = self.now(slf)? + clock::RESOLUTION;
        let fired = self.timers.with(py, |timers| {
            // Diagnostics only (off: one relaxed load per batch): how late each timer is.
            let lag = &self.stats.timer_lag;
            let record_lag = lag.is_recording();
            self.ready.with(py, |queue| {
                timers.pop_due(
                    end,
                    &mut |t: LoopHeld<TimerHandle>| {
                        if record_lag {
                            lag.record(end - t.get().deadline());
                        }
                        queue.push_back(Ready::Timer(t))
                    },
                    &mut garbage,
                )
            })
        })??;
        drop(garbage);
        LoopStats::add(&self.stats.timers_fired, fired as u64);
        Ok(())
    }

    /// Phase 5: runs the callbacks queued before this phase began.
    fn run_ready(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let ntodo = self.ready.with(py, |q| q.len())?;
        for _ in 0..ntodo {
            let Some(item) = self.ready.with(py, VecDeque::pop_front)? else {
                break;
            };
            if item.slot().is_some_and(CallbackSlot::is_cancelled) {
                item.release(py);
                continue;
            }
            self.stats
                .callback_started_ns
                .store(clock::coarse_nanos(), Ordering::Relaxed);
            // In debug mode the callback is kept through the run, and released only after
            // the reports, so the slow-callback and the error report can both name it.
            let debug_slot = item.slot().filter(|_| self.debug.load(Ordering::Relaxed));
            let result = if let Some(slot) = debug_slot {
                let started = clock::monotonic();
                let result = slot.run_again(py).map_err(|err| (err, None));
                let took = clock::monotonic() - started;
                if took >= f64::from_bits(self.slow_callback_duration.load(Ordering::Relaxed)) {
                    slf.call_method1("_slow_callback", (item.to_object(py), took))?;
                }
                result
            } else {
                item.run(&self.io, py)
            };
            self.stats.callback_started_ns.store(0, Ordering::Relaxed);
            LoopStats::add(&self.stats.callbacks_run, 1);
            if let Err((err, callback)) = result {
                if err.is_instance_of::<PyKeyboardInterrupt>(py)
                    || err.is_instance_of::<PySystemExit>(py)
                {
                    return Err(err);
                }
                let (func, args) = match callback {
                    Some((func, args)) => (Some(func), Some(args)),
                    None => (None, None),
                };
                slf.call_method1(
                    "_callback_failed",
                    (item.to_object(py), err.into_value(py), func, args),
                )?;
            }
            if let (Some(slot), false) = (debug_slot, matches!(item, Ready::Io(_))) {
                slot.release(py)?;
            }
            item.release(py);
        }
        Ok(())
    }

    fn schedule_at(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &'static str,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let this = slf.get();
        let debug = this.check_schedule(slf, &callback, method, true)?;
        let slot = Self::new_slot(slf, callback, args, context, debug)?;
        let counter = this.timers.with(py, |t| t.cancel_counter())?;
        let timer = TimerHandle::new(slot, when, counter);
        let queued = LoopHeld::new(py, timer, this.is_running())?;
        let timer = queued.object(py);
        this.timers.with(py, |t| t.push(when, queued))?;
        Ok(timer)
    }

    /// `call_soon(callback, *args, context=None)` (entry point in `fastcall`).
    pub fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let debug = slf
            .get()
            .check_schedule(slf, &callback, "call_soon", true)?;
        Self::push_soon(slf, callback, args, context, debug)
    }

    /// `call_soon_threadsafe(callback, *args, context=None)`: wakes the loop if it waits.
    pub fn call_soon_threadsafe_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let this = slf.get();
        let debug = this.check_schedule(slf, &callback, "call_soon_threadsafe", false)?;
        let handle = Self::push_soon(slf, callback, args, context, debug)?;
        this.wake_if_sleeping(slf.py())?;
        Ok(handle)
    }

    /// `call_later(delay, callback, *args, context=None)`.
    pub fn call_later_impl(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let when = slf.get().now(slf)? + delay.extract::<f64>()?;
        Self::schedule_at(slf, when, callback, args, context, "call_later")
    }

    /// `call_at(when, callback, *args, context=None)`.
    pub fn call_at_impl(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when = when.extract::<f64>()?;
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    fn run_once_impl(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        LoopStats::add(&self.stats.iterations, 1);
        let timeout = self.poll_timeout(slf)?;
        let watching_fds = self.io.watched(py)? > 0;
        if watching_fds || timeout != Some(0.0) {
            self.poll(py, timeout)?;
        }
        self.queue_due_timers(slf)?;
        self.io.begin_iteration(py)?;
        let ran = self.run_ready(slf);
        // Even after a KeyboardInterrupt: what was written this iteration still goes out.
        let waiting = self.io.end_iteration(py)?;
        let flushed = tls::flush_deferred(py, waiting);
        ran.and(flushed)
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(Self {
            ready: GilCell::new(VecDeque::new()),
            timers: GilCell::new(TimerHeap::new()),
            io: Arc::new(IoTable::new(py)?),
            stats: Arc::new(LoopStats::default()),
            closed: AtomicBool::new(false),
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            python_clock: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            slow_callback_duration: AtomicU64::new(DEFAULT_SLOW_CALLBACK_SECS.to_bits()),
            thread_id: AtomicU64::new(0),
            task_factory: TaskFactory::new(),
        })
    }

    /// A new `asyncio.Future` attached to this loop.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        tasks::create_future(slf.as_any())
    }

    /// Schedules a coroutine as an `asyncio.Task` (or through the task factory, if one is set),
    /// with the running Python's semantics for extra keywords (see `tasks::create_task`).
    #[pyo3(signature = (coro, *, name=None, context=None, **kwargs))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        this.check_closed()?;
        let factory = this.task_factory.get(slf.py())?;
        tasks::create_task(slf.as_any(), factory, coro, name, context, kwargs)
    }

    /// Sets the factory `create_task` uses: `factory(loop, coro[, context=ctx])`, or None.
    fn set_task_factory(&self, py: Python<'_>, factory: Option<Py<PyAny>>) -> PyResult<()> {
        self.task_factory.set(py, factory)
    }

    fn get_task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.task_factory.get(py)
    }

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    /// Whether scheduling reads the clock through `loop.time()` (see `python_clock`).
    fn _use_python_clock(&self, on: bool) {
        self.python_clock.store(on, Ordering::Relaxed);
    }

    /// Calls `callback(*args)` whenever `fd` (an int or an object with `fileno()`) is readable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, Side::Read)
    }

    /// Stops watching `fd` for reading; True if it was watched.
    fn remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Side::Read)
    }

    /// Calls `callback(*args)` whenever `fd` is writable.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::add_io(slf, fd, callback, args, Side::Write)
    }

    /// Stops watching `fd` for writing; True if it was watched.
    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Side::Write)
    }

    /// Runs one iteration of the loop (see the module doc for its phases).
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().run_once_impl(slf)
    }

    /// Runs iterations until `stop()` is called. The Python `run_forever` wraps this with the
    /// once-per-run setup (running loop, async generator hooks).
    fn _run_forever_core(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.check_closed()?;
        if this.running.swap(true, Ordering::SeqCst) {
            return Err(PyRuntimeError::new_err(
                "This event loop is already running",
            ));
        }
        this.thread_id.store(current_thread_id(), Ordering::Relaxed);
        let result = loop {
            if let Err(err) = this.run_once_impl(slf) {
                break Err(err);
            }
            if this.stopping.load(Ordering::Relaxed) {
                break Ok(());
            }
        };
        this.stopping.store(false, Ordering::Relaxed);
        this.thread_id.store(0, Ordering::Relaxed);
        this.running.store(false, Ordering::SeqCst);
        let tracked = this.track_held(slf.py());
        result.and(tracked)
    }

    /// Asks the loop to stop after the iteration in progress.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// RuntimeError if an open transport owns `fd` (an int or an object with `fileno()`):
    /// the `sock_*` methods must not read or write behind a transport's back.
    fn _ensure_fd_no_transport(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ensure_fd_no_transport(py, fileobj_to_fd(fd)?, fd)
    }

    fn get_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    fn set_debug(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(enabled.is_truthy()?, Ordering::Relaxed);
        Ok(())
    }

    /// Callbacks running longer than this (seconds) are logged in debug mode.
    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Ordering::Relaxed))
    }

    #[setter]
    fn set_slow_callback_duration(&self, seconds: f64) {
        self.slow_callback_duration
            .store(seconds.to_bits(), Ordering::Relaxed);
    }

    /// The id (`threading.get_ident()`) of the thread running the loop, or None.
    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Wakes the loop from any thread (asyncio's self-pipe write).
    fn _write_to_self(&self, py: Python<'_>) -> PyResult<()> {
        self.io.wake(py)
    }

    /// Claims `transport`'s fd in the loop's io table (asyncio's `loop._transports[fd]`);
    /// called by `TransportCore.create` as it makes the transport.
    fn _attach_transport(&self, transport: &Bound<'_, TransportCore>) -> PyResult<()> {
        self.check_closed()?;
        TransportCore::attach(transport, &self.io)
    }

    /// Runs `transport`'s read (or write) path as a readiness event does: what the Python
    /// transport's `_read_ready()`/`_write_ready()` call, the callbacks an error escaping that
    /// path is reported with, as asyncio reports its transports' reader and writer handles.
    fn _transport_ready(
        &self,
        transport: &Bound<'_, TransportCore>,
        writable: bool,
    ) -> PyResult<()> {
        if writable {
            TransportCore::on_writable(transport)
        } else {
            TransportCore::on_readable(transport)
        }
    }

    /// Marks the loop closed and releases the queued callbacks, timers and fd watches.
    fn _close_core(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.load(Ordering::SeqCst) {
            return Err(PyRuntimeError::new_err("Cannot close a running event loop"));
        }
        if self.closed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let ready = self.ready.with(py, std::mem::take)?;
        let mut timers = Vec::new();
        self.timers.with(py, |t| t.drain(&mut timers))?;
        self.io.close(py)?;
        drop((ready, timers));
        Ok(())
    }

    /// What the loop holds, for the cycle collector: its pending handles lead back to the loop
    /// more often than not (`call_soon(loop.stop)`, a server's accept watch, a task's timer).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(ready) = self.ready.peek() {
            for entry in ready.iter() {
                entry.traverse(&visit)?;
            }
        }
        if let Some(timers) = self.timers.peek() {
            for timer in timers.iter() {
                timer.traverse(&visit)?;
            }
        }
        self.io.traverse(&visit)?;
        self.task_factory.traverse(&visit)
    }

    fn __clear__(&self) {
        let ready = self.ready.peek_mut().map(|mut q| std::mem::take(&mut *q));
        let mut timers = Vec::new();
        if let Some(mut heap) = self.timers.peek_mut() {
            heap.drain(&mut timers);
        }
        drop((ready, timers)); // after the borrows: releasing may run `__del__`
        self.io.clear();
        self.task_factory.clear();
    }

    /// A snapshot of the loop's counters (see `oxloop.Loop.stats`).
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (timers, timers_cancelled) = self.timers.with(py, |t| (t.len(), t.cancelled_len()))?;
        let backlog = Backlog {
            ready: self.ready.with(py, |q| q.len())?,
            timers,
            timers_cancelled,
            fds: self.io.watched(py)?,
        };
        self.stats.to_dict(py, backlog)
    }
}
