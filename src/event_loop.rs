//! The loop core: the ready queue, the timer heap, the fd table and `run_once`, the one place
//! callbacks run. The Python class `oxloop.Loop` subclasses `LoopCore` and adds what runs
//! once per loop (lifecycle, executor, exception handler, signals).
//!
//! Rust because every callback, timer and I/O event passes through here. `run_once` follows
//! the phases of stock asyncio's `_run_once`, in the same order, so callback order matches:
//! 1. drop cancelled timers (all of them when they are most of the heap);
//! 2. compute the poll timeout: zero if callbacks are ready or the loop is stopping, else the
//!    time to the earliest timer, else forever;
//! 3. poll, with the GIL released when the wait can block, and queue the I/O callbacks;
//! 4. queue the timers that are due;
//! 5. run exactly the callbacks queued so far; those they schedule wait for the next iteration.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::exceptions::{
    PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::clock;
use crate::errors::io_error;
use crate::gil_cell::GilCell;
use crate::handles::{CallbackSlot, FailedCallback, Handle, LoopHeld, TimerHandle};
use crate::poller::{EventBuffer, Interest, Poller, Readiness, Registration};
use crate::sock_wait::SockWait;
use crate::stats::LoopStats;
use crate::timers::TimerHeap;
use crate::transport::{READ_SIZE, TransportCore};

/// asyncio's default for `slow_callback_duration`.
const DEFAULT_SLOW_CALLBACK_SECS: f64 = 0.1;
/// Events read per poll; more stay queued in the kernel for the next poll.
const EVENTS_PER_POLL: usize = 1024;

/// A callback waiting in the ready queue.
enum Ready {
    /// From `call_soon`: runs once.
    Soon(LoopHeld<Handle>),
    /// A due timer: runs once.
    Timer(LoopHeld<TimerHandle>),
    /// A reader or writer whose fd is ready: stays registered, runs on every event.
    Io(Py<Handle>),
    /// A `sock_recv`/`sock_sendall` wait whose fd is ready: retries until it completes.
    Sock(Arc<SockWait>),
    /// A transport whose socket is ready for reading or writing.
    Transport(Py<TransportCore>, Side),
}

impl Ready {
    /// The callback slot of a handle; None for a transport.
    #[inline]
    fn slot(&self) -> Option<&CallbackSlot> {
        match self {
            Ready::Soon(h) => Some(&h.get().slot),
            Ready::Io(h) => Some(&h.get().slot),
            Ready::Timer(t) => Some(&t.get().slot),
            Ready::Transport(..) | Ready::Sock(_) => None,
        }
    }

    fn to_object(&self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Ready::Soon(h) => h.object(py).into_any(),
            Ready::Io(h) => h.clone_ref(py).into_any(),
            Ready::Timer(t) => t.object(py).into_any(),
            Ready::Transport(t, _) => t.clone_ref(py).into_any(),
            Ready::Sock(wait) => wait.future().clone_ref(py),
        }
    }

    /// The loop is done with this entry.
    #[inline]
    fn release(self, py: Python<'_>) {
        match self {
            Ready::Soon(h) => h.release(py),
            Ready::Timer(t) => t.release(py),
            Ready::Io(_) | Ready::Sock(_) | Ready::Transport(..) => {}
        }
    }

    /// Runs the callback; on failure returns the error with the callback that raised it.
    #[inline]
    fn run(&self, core: &LoopCore, py: Python<'_>) -> Result<(), (PyErr, Option<FailedCallback>)> {
        match self {
            Ready::Sock(wait) => core.run_sock_wait(py, wait).map_err(|err| (err, None)),
            Ready::Io(h) => h.get().slot.run_again(py).map_err(|err| (err, None)),
            Ready::Soon(h) => h.get().slot.run_once(py).map_err(|(e, cb)| (e, Some(cb))),
            Ready::Timer(t) => t.get().slot.run_once(py).map_err(|(e, cb)| (e, Some(cb))),
            Ready::Transport(t, side) => {
                let t = t.bind(py);
                match side {
                    Side::Read => TransportCore::on_readable(t),
                    Side::Write => TransportCore::on_writable(t),
                }
                .map_err(|err| (err, None))
            }
        }
    }
}

/// What waits for one side of an fd: an `add_reader`/`add_writer` callback, or a socket
/// operation the core completes itself. Either replaces the other, as `add_reader` replaces
/// the reader in asyncio.
enum IoTarget {
    Callback(LoopHeld<Handle>),
    Sock(Arc<SockWait>),
}

impl IoTarget {
    fn to_ready(&self, py: Python<'_>) -> Ready {
        match self {
            IoTarget::Callback(handle) => Ready::Io(handle.object(py)),
            IoTarget::Sock(wait) => Ready::Sock(Arc::clone(wait)),
        }
    }

    /// Lets go of a target that was removed or replaced: a callback is cancelled (it drops its
    /// callback and arguments); a socket wait is dropped and its future stays pending, as the
    /// future of an asyncio operation whose reader was removed.
    fn release(self, py: Python<'_>) -> PyResult<()> {
        match self {
            IoTarget::Callback(handle) => handle.get().slot.cancel(py).map(drop),
            IoTarget::Sock(wait) => {
                drop(wait);
                Ok(())
            }
        }
    }

    fn is_wait(&self, wait: &Arc<SockWait>) -> bool {
        matches!(self, IoTarget::Sock(ours) if Arc::ptr_eq(ours, wait))
    }
}

/// What the loop runs when an fd is ready: the reader and writer targets, and the transport
/// that owns the fd (asyncio keeps the owner in `loop._transports`).
#[derive(Default)]
struct IoCallbacks {
    reader: Option<IoTarget>,
    writer: Option<IoTarget>,
    transport: Option<Py<TransportCore>>,
    transport_interest: Interest,
    /// What the poller holds for the fd (see `LoopCore::sync_kernel`).
    kernel: Registration,
}

impl IoCallbacks {
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some() || self.transport_interest.read,
            write: self.writer.is_some() || self.transport_interest.write,
        }
    }

    /// Whether the fd is registered one-shot: when the only thing waiting is a socket wait,
    /// which is unregistered or re-armed after each event anyway. A fired one-shot item needs
    /// no EPOLL_CTL_DEL when the wait completes, and the next wait re-arms it with one
    /// EPOLL_CTL_MOD instead of an ADD: one system call less per message, and no allocation
    /// in the kernel.
    fn oneshot(&self) -> bool {
        self.transport_interest.is_empty()
            && matches!(
                (&self.reader, &self.writer),
                (Some(IoTarget::Sock(_)), None) | (None, Some(IoTarget::Sock(_)))
            )
    }

    /// Whether the poller's registration differs from what the entry wants.
    fn kernel_stale(&self) -> bool {
        let wanted = self.interest();
        self.kernel.armed != wanted || (!wanted.is_empty() && self.kernel.oneshot != self.oneshot())
    }

    fn side(&mut self, side: Side) -> &mut Option<IoTarget> {
        match side {
            Side::Read => &mut self.reader,
            Side::Write => &mut self.writer,
        }
    }
}

#[derive(Clone, Copy)]
pub enum Side {
    Read,
    Write,
}

/// The fd table: callbacks per fd number, indexed directly (fd numbers are small and dense).
#[derive(Default)]
struct IoTable {
    by_fd: Vec<IoCallbacks>,
    registered: usize,
    /// The object (not an int) last given to `add_reader`/`add_writer` for an fd, kept while
    /// a reader or writer is registered: once the object is closed its `fileno()` is -1, and
    /// `remove_reader(obj)` finds the fd through it, as asyncio's selector finds its key. A
    /// map beside the table rather than a field of each entry: transports, which are most
    /// fds, never need it, and the table has an entry for every fd number up to the highest.
    fileobjs: HashMap<RawFd, Py<PyAny>>,
}

impl IoTable {
    fn entry(&mut self, fd: RawFd) -> &mut IoCallbacks {
        let index = fd as usize;
        if index >= self.by_fd.len() {
            self.by_fd.resize_with(index + 1, IoCallbacks::default);
        }
        &mut self.by_fd[index]
    }

    fn get(&self, fd: RawFd) -> Option<&IoCallbacks> {
        self.by_fd.get(fd as usize)
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut IoCallbacks> {
        self.by_fd.get_mut(fd as usize)
    }

    /// Removes the target of `fd`'s `side` if `which` accepts it, for the caller to update the
    /// poller and release it (with the fd's file object once neither side is watched).
    fn take_if(
        &mut self,
        fd: RawFd,
        side: Side,
        which: impl FnOnce(&IoTarget) -> bool,
    ) -> Option<(IoTarget, Option<Py<PyAny>>)> {
        let entry = self.get_mut(fd)?;
        if !entry.side(side).as_ref().is_some_and(which) {
            return None;
        }
        let before = entry.interest();
        let removed = entry.side(side).take()?;
        let unwatched = entry.reader.is_none() && entry.writer.is_none();
        let after = entry.interest();
        let fileobj = if unwatched {
            self.fileobjs.remove(&fd)
        } else {
            None
        };
        self.count_change(before, after);
        Some((removed, fileobj))
    }

    /// The fd whose reader or writer was registered with `obj` itself.
    fn fd_registered_with(&self, obj: &Bound<'_, PyAny>) -> Option<RawFd> {
        self.fileobjs
            .iter()
            .find_map(|(fd, ours)| ours.is(obj).then_some(*fd))
    }

    fn count_change(&mut self, before: Interest, after: Interest) {
        match (before.is_empty(), after.is_empty()) {
            (true, false) => self.registered += 1,
            (false, true) => self.registered -= 1,
            _ => {}
        }
    }
}

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

/// asyncio's conversion of a file object to its fd (`selectors._fileobj_to_fd`).
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    // An int is checked first: a failed extraction would build (and drop) an exception.
    let fd: i64 = match obj.cast::<pyo3::types::PyInt>() {
        Ok(fd) => fd
            .extract::<i64>()
            .map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))?,
        Err(_) => obj
            .call_method0("fileno")
            .and_then(|fd| fd.extract::<i64>())
            .map_err(|_| {
                let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
                PyValueError::new_err(format!("Invalid file object: {shown}"))
            })?,
    };
    if fd < 0 || fd > i64::from(i32::MAX) {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(fd as RawFd)
}

fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    static ISCOROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ISCOROUTINE
        .import(obj.py(), "asyncio", "iscoroutine")
        .and_then(|f| f.call1((obj,)))
        .and_then(|r| r.is_truthy())
        .unwrap_or(false)
}

/// The always-on part of asyncio's `_check_callback`: a coroutine or a non-callable is a
/// `TypeError` at the call, not an error much later in the exception handler.
#[inline]
fn check_callable(callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
    if callback.is_callable() {
        return Ok(());
    }
    if is_coroutine(callback) {
        return Err(PyTypeError::new_err(format!(
            "coroutines cannot be used with {method}()"
        )));
    }
    let shown = callback.repr().map(|r| r.to_string()).unwrap_or_default();
    Err(PyTypeError::new_err(format!(
        "a callable object was expected by {method}(), got {shown}"
    )))
}

/// Calls `callable(*args, **dict(zip(kwnames, kwargs)))` through vectorcall, without building
/// a dict: `asyncio.Task(coro, loop=..., ...)` and `asyncio.Future(loop=...)` on every task
/// and future the loop makes.
fn vectorcall_kw<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
    kwargs: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    debug_assert_eq!(kwnames.len(), kwargs.len());
    let stack: Vec<*mut pyo3::ffi::PyObject> =
        args.iter().chain(kwargs).map(|obj| obj.as_ptr()).collect();
    // SAFETY: GIL held; `stack` holds borrowed pointers kept alive by `args`/`kwargs` for the
    // call, its length is positional + keyword count, and `kwnames` is a tuple of str.
    unsafe {
        let result = pyo3::ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            stack.as_ptr(),
            args.len(),
            kwnames.as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, result)
    }
}

fn interned_names<'py>(
    cell: &'static PyOnceLock<Py<PyTuple>>,
    py: Python<'py>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    cell.get_or_try_init(py, || {
        let names = names.iter().map(|n| pyo3::types::PyString::intern(py, n));
        PyTuple::new(py, names).map(Bound::unbind)
    })
    .map(|names| names.bind(py))
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
    io: GilCell<IoTable>,
    poller: Poller,
    event_buf: GilCell<EventBuffer>,
    readiness_buf: GilCell<Vec<Readiness>>,
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
    task_factory: GilCell<Option<Py<PyAny>>>,
    /// Where transports read into before copying exactly what arrived into `bytes`.
    read_buffer: GilCell<Vec<u8>>,
}

impl LoopCore {
    /// Runs `f` on the loop's reusable read buffer (allocated on the first read).
    pub(crate) fn with_read_buffer<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> PyResult<R> {
        self.read_buffer.with(py, |buf| {
            if buf.len() < READ_SIZE {
                buf.resize(READ_SIZE, 0);
            }
            f(&mut buf[..])
        })
    }

    /// Records `transport` as the owner of `fd` (asyncio's `loop._transports[fd]`).
    pub(crate) fn attach_transport(
        &self,
        py: Python<'_>,
        fd: RawFd,
        transport: &Py<TransportCore>,
    ) -> PyResult<()> {
        self.check_closed()?;
        let previous = self.io.with(py, |io| {
            io.entry(fd).transport.replace(transport.clone_ref(py))
        })?;
        drop(previous);
        Ok(())
    }

    /// Sets what the poller watches `fd` for on behalf of its transport.
    pub(crate) fn set_transport_interest(
        &self,
        py: Python<'_>,
        fd: RawFd,
        transport: &Py<TransportCore>,
        wanted: Interest,
    ) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let stale = self.io.with(py, |io| {
            let entry = io.entry(fd);
            if !entry.transport.as_ref().is_some_and(|s| s.is(transport)) {
                return false;
            }
            let before = entry.interest();
            entry.transport_interest = wanted;
            let after = entry.interest();
            let stale = entry.kernel_stale();
            io.count_change(before, after);
            stale
        })?;
        if stale {
            self.sync_kernel(py, fd)?;
        }
        Ok(())
    }

    /// Forgets `transport` as the owner of `fd` and stops watching it for the transport.
    pub(crate) fn detach_transport(
        &self,
        py: Python<'_>,
        fd: RawFd,
        transport: &Py<TransportCore>,
    ) -> PyResult<()> {
        self.set_transport_interest(py, fd, transport, Interest::default())?;
        let released = self.io.with(py, |io| {
            let entry = io.entry(fd);
            if entry.transport.as_ref().is_some_and(|s| s.is(transport)) {
                entry.transport.take()
            } else {
                None
            }
        })?;
        drop(released);
        Ok(())
    }

    /// asyncio's `_ensure_fd_no_transport`: an fd owned by an open transport is off limits.
    fn ensure_fd_no_transport(
        &self,
        py: Python<'_>,
        fd: RawFd,
        shown: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let owner = self.io.with(py, |io| {
            io.get(fd)
                .and_then(|entry| entry.transport.as_ref().map(|s| s.clone_ref(py)))
        })?;
        let Some(owner) = owner else {
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

    /// The counters, shared with the diagnostics watchdog thread.
    pub(crate) fn stats(&self) -> &Arc<LoopStats> {
        &self.stats
    }

    #[inline]
    fn check_closed(&self) -> PyResult<()> {
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
        let queued = LoopHeld::new(py, Handle { slot })?;
        let handle = queued.object(py);
        slf.get()
            .ready
            .with(py, |q| q.push_back(Ready::Soon(queued)))?;
        Ok(handle)
    }

    fn wake_if_sleeping(&self, py: Python<'_>) -> PyResult<()> {
        if self.sleeping.load(Ordering::SeqCst) {
            self.poller.wake().map_err(|err| io_error(py, err))?;
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
        this.check_closed()?;
        let fd_number = fileobj_to_fd(fd)?;
        this.ensure_fd_no_transport(py, fd_number, fd)?;
        let method = match side {
            Side::Read => "add_reader",
            Side::Write => "add_writer",
        };
        check_callable(&callback, method)?;
        let slot = Self::new_slot(slf, callback, args, None, false)?;
        let handle = LoopHeld::new(py, Handle { slot })?;
        this.watch(py, fd_number, side, IoTarget::Callback(handle))?;
        if fd.cast::<pyo3::types::PyInt>().is_err() {
            let previous = this
                .io
                .with(py, |io| io.fileobjs.insert(fd_number, fd.clone().unbind()))?;
            drop(previous);
        }
        Ok(())
    }

    /// Makes `target` what runs when `fd` is ready on `side`, replacing (and releasing) the
    /// previous target of that side.
    fn watch(&self, py: Python<'_>, fd: RawFd, side: Side, target: IoTarget) -> PyResult<()> {
        let (before, after, previous) = self.io.with(py, |io| {
            let entry = io.entry(fd);
            let before = entry.interest();
            let previous = entry.side(side).replace(target);
            (before, entry.interest(), previous)
        })?;
        if let Err(err) = self.sync_kernel(py, fd) {
            // Put the table back as it was: the fd is not watched.
            let ours = self.io.with(py, |io| {
                let entry = io.entry(fd);
                std::mem::replace(entry.side(side), previous)
            })?;
            drop(ours);
            return Err(err);
        }
        self.io.with(py, |io| io.count_change(before, after))?;
        if let Some(previous) = previous {
            previous.release(py)?;
        }
        Ok(())
    }

    /// Stops watching `fd` on `side` if its target is one `which` accepts; true if it was.
    fn unwatch_if(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: Side,
        which: impl FnOnce(&IoTarget) -> bool,
    ) -> PyResult<bool> {
        let Some((removed, fileobj)) = self.io.with(py, |io| io.take_if(fd, side, which))? else {
            return Ok(false);
        };
        drop(fileobj);
        removed.release(py)?;
        self.sync_kernel(py, fd)?;
        Ok(true)
    }

    /// Brings the poller's registration of `fd` in line with what its entry wants.
    fn sync_kernel(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let (current, wanted, oneshot) = self.io.with(py, |io| {
            let entry = io.entry(fd);
            (entry.kernel, entry.interest(), entry.oneshot())
        })?;
        let now = self
            .poller
            .register(fd, current, wanted, oneshot)
            .map_err(|err| io_error(py, err))?;
        self.io.with(py, |io| io.entry(fd).kernel = now)
    }

    fn remove_io(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, side: Side) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let fd_number = match fileobj_to_fd(fd) {
            Ok(fd_number) => {
                this.ensure_fd_no_transport(py, fd_number, fd)?;
                fd_number
            }
            // A socket closed while watched answers -1 to fileno(); asyncio's selector still
            // finds the registration made with that same object, and so do we. An object whose
            // fileno() fails is not looked for: asyncio's `_ensure_fd_no_transport` rejects it.
            Err(err) => {
                let answers_fileno = fd.cast::<pyo3::types::PyInt>().is_err()
                    && fd
                        .call_method0("fileno")
                        .is_ok_and(|n| n.cast::<pyo3::types::PyInt>().is_ok());
                let found = if answers_fileno {
                    this.io.with(py, |io| io.fd_registered_with(fd))?
                } else {
                    None
                };
                found.ok_or(err)?
            }
        };
        this.unwatch_if(py, fd_number, side, |_| true)
    }

    /// Registers a socket wait (`_sock_recv_wait`, `_sock_sendall_wait`).
    fn start_sock_wait(&self, py: Python<'_>, wait: SockWait) -> PyResult<()> {
        self.check_closed()?;
        let (fd, side) = (wait.fd(), wait.side());
        self.watch(py, fd, side, IoTarget::Sock(Arc::new(wait)))
    }

    /// Runs a socket wait whose fd was reported ready: tries the operation unless the wait was
    /// cancelled, and once it is over (or cancelled) unregisters the wait, then completes the
    /// future. A wait that is no longer registered (removed or replaced since the event was
    /// queued) does nothing, as a cancelled handle.
    fn run_sock_wait(&self, py: Python<'_>, wait: &Arc<SockWait>) -> PyResult<()> {
        let (fd, side) = (wait.fd(), wait.side());
        let registered = self.io.with(py, |io| {
            io.get_mut(fd)
                .and_then(|entry| entry.side(side).as_ref().map(|t| t.is_wait(wait)))
                .unwrap_or(false)
        })?;
        if !registered {
            return Ok(());
        }
        if wait.future_done(py)? {
            self.unwatch_if(py, fd, side, |t| t.is_wait(wait))?;
            return Ok(());
        }
        let Some(outcome) = wait.attempt(py) else {
            // Still waiting: a fired one-shot registration has to be armed again.
            let stale = self.io.with(py, |io| io.entry(fd).kernel_stale())?;
            return if stale {
                self.sync_kernel(py, fd)
            } else {
                Ok(())
            };
        };
        let outcome = match self.unwatch_if(py, fd, side, |t| t.is_wait(wait)) {
            Ok(_) => outcome,
            Err(err) => Err(err),
        };
        wait.complete(py, outcome);
        Ok(())
    }

    /// The loop's notion of now: the monotonic clock, or `loop.time()` when that is replaced.
    fn now(&self, slf: &Bound<'_, Self>) -> PyResult<f64> {
        if self.python_clock.load(Ordering::Relaxed) {
            slf.call_method0(intern!(slf.py(), "time"))?
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

    /// Phase 3: waits for I/O and queues the callbacks of the fds that are ready.
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let mut events = self.event_buf.with(py, std::mem::take)?;
        let mut ready_fds = self.readiness_buf.with(py, std::mem::take)?;
        ready_fds.clear();
        let waited = if timeout == Some(0.0) {
            self.poller.wait(&mut events, timeout, &mut ready_fds)
        } else {
            self.sleeping.store(true, Ordering::SeqCst);
            let started = std::time::Instant::now();
            let result = py.detach(|| self.poller.wait(&mut events, timeout, &mut ready_fds));
            self.sleeping.store(false, Ordering::SeqCst);
            LoopStats::add(
                &self.stats.poll_wait_ns,
                started.elapsed().as_nanos() as u64,
            );
            result
        };
        let outcome = self.queue_io_callbacks(py, &ready_fds);
        self.event_buf.with(py, |buf| *buf = events)?;
        self.readiness_buf.with(py, |buf| *buf = ready_fds)?;
        match waited {
            Ok(true) => outcome,
            // Interrupted by a signal: run Python's handlers now (SIGINT raises
            // KeyboardInterrupt out of run_forever, as in stock asyncio).
            Ok(false) => py.check_signals(),
            Err(err) => Err(io_error(py, err)),
        }
    }

    fn queue_io_callbacks(&self, py: Python<'_>, ready_fds: &[Readiness]) -> PyResult<()> {
        if ready_fds.is_empty() {
            return Ok(());
        }
        LoopStats::add(&self.stats.io_events, ready_fds.len() as u64);
        let io = &self.io;
        self.ready.with(py, |queue| {
            io.with(py, |table| {
                for event in ready_fds {
                    let Some(entry) = table.get_mut(event.fd) else {
                        continue;
                    };
                    entry.kernel = entry.kernel.fired();
                    if let (true, Some(reader)) = (event.readable, &entry.reader) {
                        queue.push_back(reader.to_ready(py));
                    }
                    if let (true, Some(writer)) = (event.writable, &entry.writer) {
                        queue.push_back(writer.to_ready(py));
                    }
                    if let Some(owner) = &entry.transport {
                        if event.readable && entry.transport_interest.read {
                            queue.push_back(Ready::Transport(owner.clone_ref(py), Side::Read));
                        }
                        if event.writable && entry.transport_interest.write {
                            queue.push_back(Ready::Transport(owner.clone_ref(py), Side::Write));
                        }
                    }
                }
            })
        })?
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
                item.run(self, py)
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
        let queued = LoopHeld::new(py, TimerHandle::new(slot, when, counter))?;
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
        let watching_fds = self.io.with(py, |io| io.registered > 0)?;
        if watching_fds || timeout != Some(0.0) {
            self.poll(py, timeout)?;
        }
        self.queue_due_timers(slf)?;
        self.run_ready(slf)
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
            io: GilCell::new(IoTable::default()),
            poller: Poller::new().map_err(|err| io_error(py, err))?,
            event_buf: GilCell::new(EventBuffer::with_capacity(EVENTS_PER_POLL)),
            readiness_buf: GilCell::new(Vec::new()),
            stats: Arc::new(LoopStats::default()),
            closed: AtomicBool::new(false),
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            python_clock: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            slow_callback_duration: AtomicU64::new(DEFAULT_SLOW_CALLBACK_SECS.to_bits()),
            thread_id: AtomicU64::new(0),
            task_factory: GilCell::new(None),
            read_buffer: GilCell::new(Vec::new()),
        })
    }

    /// A new `asyncio.Future` attached to this loop.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let py = slf.py();
        let future = FUTURE.import(py, "asyncio", "Future")?;
        let kwnames = interned_names(&KWNAMES, py, &["loop"])?;
        vectorcall_kw(future, &[], kwnames, &[slf.as_any()])
    }

    /// Schedules a coroutine as an `asyncio.Task` (or through the task factory, if one is set).
    ///
    /// Keyword arguments beyond `name` and `context` (3.13+: `eager_start`, or whatever a task
    /// factory takes) go to the task or the factory, as on asyncio; before 3.13 asyncio's
    /// `create_task` has no such arguments, and neither has this one there.
    #[pyo3(signature = (coro, *, name=None, context=None, **kwargs))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        static CONTEXT_KW: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let extra = kwargs.filter(|k| !k.is_empty());
        if let Some(extra) = extra
            && py.version_info() < (3, 13)
        {
            let first = extra.keys().get_item(0)?;
            return Err(PyTypeError::new_err(format!(
                "create_task() got an unexpected keyword argument '{first}'"
            )));
        }
        let factory = this
            .task_factory
            .with(py, |f| f.as_ref().map(|f| f.clone_ref(py)))?;
        let Some(factory) = factory else {
            let task = TASK.import(py, "asyncio", "Task")?;
            let none = py.None().into_bound(py);
            let (name, context) = (name.unwrap_or(&none), context.unwrap_or(&none));
            let Some(extra) = extra else {
                let kwnames = interned_names(&KWNAMES, py, &["loop", "name", "context"])?;
                return vectorcall_kw(task, &[coro], kwnames, &[slf.as_any(), name, context]);
            };
            let all = extra.copy()?;
            all.set_item(intern!(py, "loop"), slf)?;
            all.set_item(intern!(py, "name"), name)?;
            all.set_item(intern!(py, "context"), context)?;
            return task.call((coro,), Some(&all));
        };
        let factory = factory.bind(py);
        if py.version_info() >= (3, 14) {
            // 3.14 hands the factory every keyword as given, the name included.
            let all = extra.map_or_else(|| Ok(PyDict::new(py)), |e| e.copy())?;
            if let Some(name) = name {
                all.set_item(intern!(py, "name"), name)?;
            }
            if let Some(context) = context {
                all.set_item(intern!(py, "context"), context)?;
            }
            return factory.call((slf, coro), Some(&all));
        }
        let context = context.filter(|c| !c.is_none());
        let task = match (context, extra) {
            (None, None) => factory.call1((slf, coro))?,
            (Some(context), None) => {
                let kwnames = interned_names(&CONTEXT_KW, py, &["context"])?;
                vectorcall_kw(factory, &[slf.as_any(), coro], kwnames, &[context])?
            }
            (context, Some(extra)) => {
                let all = extra.copy()?;
                if let Some(context) = context {
                    all.set_item(intern!(py, "context"), context)?;
                }
                factory.call((slf, coro), Some(&all))?
            }
        };
        // DEVIATION: 3.13 calls `task.set_name(name)` even when no name was given, which names
        // every task of a custom factory "None"; a task without a name keeps its own here.
        if let Some(name) = name.filter(|n| !n.is_none()) {
            match task.call_method1(intern!(py, "set_name"), (name,)) {
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(task)
    }

    /// Sets the factory `create_task` uses: `factory(loop, coro[, context=ctx])`, or None.
    fn set_task_factory(&self, py: Python<'_>, factory: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(f) = &factory
            && !f.bind(py).is_callable()
        {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let previous = self
            .task_factory
            .with(py, |f| std::mem::replace(f, factory))?;
        drop(previous);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.task_factory
            .with(py, |f| f.as_ref().map(|f| f.clone_ref(py)))
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

    /// The wait of `sock_recv(sock, n)` once a first `recv` would block: the core completes
    /// `future` (pending, from `create_future`) with the bytes of the `recv` it does when `fd`
    /// (`sock`'s) is readable, or with its error. Replaces any reader of `fd`, as `add_reader`
    /// does.
    fn _sock_recv_wait(
        &self,
        py: Python<'_>,
        sock: Py<PyAny>,
        fd: RawFd,
        n: usize,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        self.start_sock_wait(py, SockWait::recv(sock, fd, future, n))
    }

    /// The wait of `sock_recv_into(sock, buffer)` once a first `recv` would block: as
    /// `_sock_recv_wait`, receiving into `buffer` and completing `future` with the count.
    fn _sock_recv_into_wait(
        &self,
        py: Python<'_>,
        sock: Py<PyAny>,
        fd: RawFd,
        buffer: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        self.start_sock_wait(py, SockWait::recv_into(sock, fd, future, buffer))
    }

    /// The wait of `sock_sendall(sock, data)` once a first `send` left `rest` (a byte view)
    /// unsent: the core sends it as `fd` becomes writable and completes `future` with None
    /// when all is sent, or with the error. Replaces any writer of `fd`.
    fn _sock_sendall_wait(
        &self,
        py: Python<'_>,
        sock: Py<PyAny>,
        fd: RawFd,
        rest: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        self.start_sock_wait(py, SockWait::send_all(sock, fd, future, rest))
    }

    /// Withdraws the socket wait of `future` from `fd` if it is still registered there (the
    /// operation was cancelled); a newer registration of the fd number is left alone.
    fn _sock_unwatch(&self, py: Python<'_>, fd: RawFd, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        for side in [Side::Read, Side::Write] {
            let ours = |target: &IoTarget| matches!(target, IoTarget::Sock(wait) if wait.future().is(future));
            if self.unwatch_if(py, fd, side, ours)? {
                break;
            }
        }
        Ok(())
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
        result
    }

    /// Asks the loop to stop after the iteration in progress.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn is_closed(&self) -> bool {
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
        if self.poller.is_closed() {
            return Ok(());
        }
        self.poller.wake().map_err(|err| io_error(py, err))
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
        let io = self.io.with(py, std::mem::take)?;
        self.poller.close();
        drop((ready, timers, io));
        Ok(())
    }

    /// A snapshot of the loop's counters (see `oxloop.Loop.stats`).
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.stats;
        let dict = PyDict::new(py);
        dict.set_item("iterations", LoopStats::get(&s.iterations))?;
        dict.set_item("callbacks_run", LoopStats::get(&s.callbacks_run))?;
        dict.set_item("timers_fired", LoopStats::get(&s.timers_fired))?;
        dict.set_item("io_events", LoopStats::get(&s.io_events))?;
        dict.set_item(
            "poll_wait_seconds",
            LoopStats::get(&s.poll_wait_ns) as f64 * 1e-9,
        )?;
        dict.set_item("ready", self.ready.with(py, |q| q.len())?)?;
        let (timers, cancelled) = self.timers.with(py, |t| (t.len(), t.cancelled_len()))?;
        dict.set_item("timers", timers)?;
        dict.set_item("timers_cancelled", cancelled)?;
        dict.set_item("fds", self.io.with(py, |io| io.registered)?)?;
        Ok(dict)
    }
}
