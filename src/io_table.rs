//! The fd table: what waits on each file descriptor, and the only user of the poller.
//!
//! Per fd number the table holds a reader and a writer target (an `add_reader`/`add_writer`
//! callback, or a `sock_*` wait the core completes itself; either replaces the other, as
//! `add_reader` replaces the reader in asyncio), the transport that owns the fd (asyncio's
//! `loop._transports`) with what it wants to be told about, and what the poller holds for the
//! fd. Everything that changes what an fd is watched for goes through here, so the kernel's
//! registration is brought in line in one place (`sync_kernel`).
//!
//! The table is indexed by fd number (fd numbers are small and dense). A number grows the table
//! only once the kernel has confirmed it is an open fd of this process: a number a user made up
//! (`add_reader(2**31 - 1, cb)`) must fail with EBADF, as on asyncio, not size a table by it.
//!
//! Generic over the owner type `O` (the transport core) so that the table does not depend on
//! transports, which depend on it to change their interest.
//!
//! The table also holds what waits for the end of the iteration in progress (`IterationEnd`):
//! transports see the table, not the loop, and the loop runs those at the end of its callbacks.
//!
//! Rust because every I/O event is looked up here.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyAttributeError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{io_error, os_error};
use crate::gil_cell::GilCell;
use crate::handles::{Handle, LoopHeld};
pub use crate::poller::Interest;
use crate::poller::{EventBuffer, Poller, Readiness, Registration};
use crate::sock_ops::SockWait;
use crate::socket_io;

/// The event buffer's first size; it grows to the number of watched fds.
const EVENTS_PER_POLL: usize = 1024;

/// One half of an fd's readiness.
#[derive(Clone, Copy)]
pub enum Side {
    Read,
    Write,
}

/// What waits for one side of an fd.
pub enum IoTarget {
    /// An `add_reader`/`add_writer` callback: runs on every event until removed.
    Callback(LoopHeld<Handle>),
    /// A `sock_recv`/`sock_sendall` wait: retries until it completes.
    Sock(Arc<SockWait>),
}

impl IoTarget {
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

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            IoTarget::Callback(handle) => handle.traverse(visit),
            IoTarget::Sock(wait) => wait.traverse(visit),
        }
    }

    fn is_wait(&self, wait: &Arc<SockWait>) -> bool {
        matches!(self, IoTarget::Sock(ours) if Arc::ptr_eq(ours, wait))
    }

    /// True for the socket wait that completes `future`.
    pub fn is_wait_for(&self, future: &Bound<'_, PyAny>) -> bool {
        matches!(self, IoTarget::Sock(wait) if wait.future().is(future))
    }
}

/// What one readiness report asks the loop to run.
pub enum IoEvent<'a, O> {
    Target(&'a IoTarget, Side),
    Owner(&'a Py<O>, Side),
}

/// Everything that waits on one fd.
struct Entry<O> {
    reader: Option<IoTarget>,
    writer: Option<IoTarget>,
    owner: Option<Py<O>>,
    owner_interest: Interest,
    /// What the poller holds for the fd (see `IoTable::sync_kernel`).
    kernel: Registration,
}

impl<O> Default for Entry<O> {
    fn default() -> Self {
        Self {
            reader: None,
            writer: None,
            owner: None,
            owner_interest: Interest::default(),
            kernel: Registration::default(),
        }
    }
}

impl<O> Entry<O> {
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some() || self.owner_interest.read,
            write: self.writer.is_some() || self.owner_interest.write,
        }
    }

    /// Whether the fd is registered one-shot: when the only thing waiting is a socket wait,
    /// which is unregistered or re-armed after each event anyway. A fired one-shot item needs
    /// no EPOLL_CTL_DEL when the wait completes, and the next wait re-arms it with one
    /// EPOLL_CTL_MOD instead of an ADD: one system call less per message, and no allocation
    /// in the kernel.
    fn oneshot(&self) -> bool {
        self.owner_interest.is_empty()
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

    fn owned_by(&self, owner: &Py<O>) -> bool {
        self.owner.as_ref().is_some_and(|ours| ours.is(owner))
    }
}

/// The entries, behind the table's `GilCell`.
struct Entries<O> {
    by_fd: Vec<Entry<O>>,
    /// Number of fds watched for anything.
    watched: usize,
    /// The object (not an int) last given to `add_reader`/`add_writer` for an fd, kept while
    /// a reader or writer is registered: once the object is closed its `fileno()` is -1, and
    /// `remove_reader(obj)` finds the fd through it, as asyncio's selector finds its key. A
    /// map beside the table rather than a field of each entry: transports, which are most
    /// fds, never need it, and the table has an entry for every fd number up to the highest.
    fileobjs: HashMap<RawFd, Py<PyAny>>,
}

impl<O> Default for Entries<O> {
    fn default() -> Self {
        Self {
            by_fd: Vec::new(),
            watched: 0,
            fileobjs: HashMap::new(),
        }
    }
}

impl<O> Entries<O> {
    /// The entry of `fd`, growing the table to it only if the kernel confirms `fd` is open.
    fn entry(&mut self, fd: RawFd) -> Result<&mut Entry<O>, rustix::io::Errno> {
        let index = usize::try_from(fd).map_err(|_| rustix::io::Errno::BADF)?;
        if index >= self.by_fd.len() {
            socket_io::is_open(fd)?;
            self.by_fd.resize_with(index + 1, Entry::default);
        }
        Ok(&mut self.by_fd[index])
    }

    fn get(&self, fd: RawFd) -> Option<&Entry<O>> {
        self.by_fd.get(usize::try_from(fd).ok()?)
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Entry<O>> {
        self.by_fd.get_mut(usize::try_from(fd).ok()?)
    }

    fn count_change(&mut self, before: Interest, after: Interest) {
        match (before.is_empty(), after.is_empty()) {
            (true, false) => self.watched += 1,
            (false, true) => self.watched -= 1,
            _ => {}
        }
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
}

/// The reusable buffers of one poll: epoll's events and the readiness reports made from them.
#[derive(Default)]
pub struct PollBatch {
    events: EventBuffer,
    ready: Vec<Readiness>,
}

impl PollBatch {
    pub fn len(&self) -> usize {
        self.ready.len()
    }
}

/// The loop's fd table and its poller. Shared (`Arc`) between the loop and its transports.
pub struct IoTable<O> {
    entries: GilCell<Entries<O>>,
    poller: Poller,
    batch: GilCell<PollBatch>,
    iteration_end: GilCell<IterationEnd>,
}

/// Objects whose output of this iteration goes out in one piece once the iteration's callbacks
/// have run (the TLS layers of transport/tls.rs: one send for all the records of an
/// iteration, as uvloop flushes its streams once per iteration).
#[derive(Default)]
struct IterationEnd {
    /// True while the loop runs an iteration's callbacks: only then is an end coming.
    open: bool,
    waiting: Vec<Py<PyAny>>,
}

/// asyncio's conversion of a file object to its fd (`selectors._fileobj_to_fd`, after
/// `_ensure_fd_no_transport`'s `int(fileobj.fileno())`), with its exceptions: ValueError for
/// a negative number or an object without a usable `fileno()`, OverflowError for a number no
/// C int holds, and whatever else `fileno()` raises.
pub fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    int_to_fd(&fileobj_number(obj)?)
}

/// The first half of `fileobj_to_fd`, asyncio's `_ensure_fd_no_transport`: an int as it is,
/// any other object's `int(fileno())`, ValueError for an object without a usable `fileno()`.
/// asyncio makes this check even on a closed loop, before it looks at the number.
pub fn fileobj_number<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyInt>> {
    let py = obj.py();
    Ok(match obj.cast::<PyInt>() {
        Ok(fd) => fd.clone(),
        Err(_) => obj
            .call_method0("fileno")
            .and_then(|fd| py.get_type::<PyInt>().call1((fd,)))
            .and_then(|fd| Ok(fd.cast_into::<PyInt>()?))
            .map_err(|err| {
                if err.is_instance_of::<PyAttributeError>(py)
                    || err.is_instance_of::<PyTypeError>(py)
                    || err.is_instance_of::<PyValueError>(py)
                {
                    let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
                    PyValueError::new_err(format!("Invalid file object: {shown}"))
                } else {
                    err
                }
            })?,
    })
}

/// The second half of `fileobj_to_fd`: the number as an fd, or asyncio's error for it.
pub fn int_to_fd(number: &Bound<'_, PyInt>) -> PyResult<RawFd> {
    match number.extract::<RawFd>() {
        Ok(fd) if fd >= 0 => Ok(fd),
        Ok(_) => Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {number}"
        ))),
        Err(_) if number.lt(0)? => Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {number}"
        ))),
        Err(_) => Err(PyOverflowError::new_err(
            "Python int too large to convert to C int",
        )),
    }
}

impl<O> IoTable<O> {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Self {
            entries: GilCell::new(Entries::default()),
            poller: Poller::new().map_err(|err| io_error(py, err))?,
            batch: GilCell::new(PollBatch {
                events: EventBuffer::with_capacity(EVENTS_PER_POLL),
                ready: Vec::new(),
            }),
            iteration_end: GilCell::new(IterationEnd::default()),
        })
    }

    /// The loop starts running an iteration's callbacks: `defer_to_iteration_end` accepts
    /// until `end_iteration`.
    pub fn begin_iteration(&self, py: Python<'_>) -> PyResult<()> {
        self.iteration_end.with(py, |end| end.open = true)
    }

    /// Queues `obj` for the end of the iteration in progress. False, and nothing queued,
    /// outside an iteration's callbacks (no end is coming): the caller does the work at once.
    pub fn defer_to_iteration_end(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let obj = obj.clone().unbind();
        let queued = self.iteration_end.with(py, |end| {
            if end.open {
                end.waiting.push(obj);
                None
            } else {
                Some(obj)
            }
        })?;
        Ok(queued.is_none()) // a refused object is dropped here, after the borrow
    }

    /// The iteration's callbacks are done: what was queued, in order, for the loop to run.
    /// Deferring is refused from now until the next `begin_iteration`.
    pub fn end_iteration(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        self.iteration_end.with(py, |end| {
            end.open = false;
            std::mem::take(&mut end.waiting)
        })
    }

    /// Number of fds watched for anything.
    pub fn watched(&self, py: Python<'_>) -> PyResult<usize> {
        self.entries.with(py, |e| e.watched)
    }

    /// Makes `target` what runs when `fd` is ready on `side`, replacing (and releasing) the
    /// previous target of that side. `fileobj`, if given, is the object `fd` came from.
    pub fn watch(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: Side,
        target: IoTarget,
        fileobj: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (before, after, previous) = self
            .entries
            .with(py, |e| {
                let entry = e.entry(fd)?;
                let before = entry.interest();
                let previous = entry.side(side).replace(target);
                Ok((before, entry.interest(), previous))
            })?
            .map_err(|err| os_error(py, err))?;
        if let Err(err) = self.sync_kernel(py, fd) {
            self.entries.with(py, |e| e.count_change(before, after))?;
            if let Some(previous) = previous {
                previous.release(py)?;
            }
            self.forget_sides(py, fd)?;
            return Err(err);
        }
        let replaced_fileobj = self.entries.with(py, |e| {
            e.count_change(before, after);
            fileobj.and_then(|obj| e.fileobjs.insert(fd, obj.clone().unbind()))
        })?;
        drop(replaced_fileobj);
        if let Some(previous) = previous {
            previous.release(py)?;
        }
        Ok(())
    }

    /// Stops watching `fd` on `side` if its target is one `which` accepts; true if it was.
    pub fn unwatch_if(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: Side,
        which: impl FnOnce(&IoTarget) -> bool,
    ) -> PyResult<bool> {
        let Some((removed, fileobj)) = self.entries.with(py, |e| e.take_if(fd, side, which))?
        else {
            return Ok(false);
        };
        drop(fileobj);
        removed.release(py)?;
        if let Err(err) = self.sync_kernel(py, fd) {
            self.forget_sides(py, fd)?;
            return Err(err);
        }
        Ok(true)
    }

    /// Forgets every callback and socket wait of `fd` once the kernel refused to change its
    /// registration (the fd was closed behind the loop's back, or cannot be polled), as
    /// asyncio's selector forgets the fd's key when `epoll_ctl` fails: nothing stays
    /// registered for a dead fd, holding its callbacks until the number is reused.
    fn forget_sides(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let forgotten = self.entries.with(py, |e| {
            let entry = e.get_mut(fd)?;
            let before = entry.interest();
            let sides = (entry.reader.take(), entry.writer.take());
            entry.kernel = Registration::default();
            let after = entry.interest();
            e.count_change(before, after);
            Some((sides, e.fileobjs.remove(&fd)))
        })?;
        let Some(((reader, writer), fileobj)) = forgotten else {
            return Ok(());
        };
        drop(fileobj);
        for target in [reader, writer].into_iter().flatten() {
            target.release(py)?;
        }
        Ok(())
    }

    /// The fd whose reader or writer was registered with `obj` itself.
    pub fn fd_registered_with(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
        self.entries.with(obj.py(), |e| {
            e.fileobjs
                .iter()
                .find_map(|(fd, ours)| ours.is(obj).then_some(*fd))
        })
    }

    /// Brings the poller's registration of `fd` in line with what its entry wants.
    fn sync_kernel(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let wanted = self.entries.with(py, |e| {
            e.get(fd)
                .map(|entry| (entry.kernel, entry.interest(), entry.oneshot()))
        })?;
        let Some((current, wanted, oneshot)) = wanted else {
            return Ok(());
        };
        let now = self
            .poller
            .register(fd, current, wanted, oneshot)
            .map_err(|err| io_error(py, err))?;
        self.entries.with(py, |e| {
            if let Some(entry) = e.get_mut(fd) {
                entry.kernel = now;
            }
        })
    }

    /// Records `owner` as the owner of `fd` (asyncio's `loop._transports[fd]`).
    pub fn attach_owner(&self, py: Python<'_>, fd: RawFd, owner: &Py<O>) -> PyResult<()> {
        let previous = self
            .entries
            .with(py, |e| Ok(e.entry(fd)?.owner.replace(owner.clone_ref(py))))?
            .map_err(|err| os_error(py, err))?;
        drop(previous);
        Ok(())
    }

    /// Sets what the poller watches `fd` for on behalf of its owner; nothing if `owner` no
    /// longer owns it.
    pub fn set_owner_interest(
        &self,
        py: Python<'_>,
        fd: RawFd,
        owner: &Py<O>,
        wanted: Interest,
    ) -> PyResult<()> {
        if self.poller.is_closed() {
            return Ok(());
        }
        let stale = self.entries.with(py, |e| {
            let Some(entry) = e.get_mut(fd).filter(|entry| entry.owned_by(owner)) else {
                return false;
            };
            let before = entry.interest();
            entry.owner_interest = wanted;
            let after = entry.interest();
            let stale = entry.kernel_stale();
            e.count_change(before, after);
            stale
        })?;
        if stale {
            self.sync_kernel(py, fd)?;
        }
        Ok(())
    }

    /// Forgets `owner` as the owner of `fd` and stops watching it for the owner.
    pub fn detach_owner(&self, py: Python<'_>, fd: RawFd, owner: &Py<O>) -> PyResult<()> {
        self.set_owner_interest(py, fd, owner, Interest::default())?;
        let released = self.entries.with(py, |e| {
            e.get_mut(fd)
                .filter(|entry| entry.owned_by(owner))
                .and_then(|entry| entry.owner.take())
        })?;
        drop(released);
        Ok(())
    }

    /// The owner of `fd`, if any.
    pub fn owner(&self, py: Python<'_>, fd: RawFd) -> PyResult<Option<Py<O>>> {
        self.entries.with(py, |e| {
            e.get(fd)
                .and_then(|entry| entry.owner.as_ref().map(|o| o.clone_ref(py)))
        })
    }

    /// Runs a socket wait whose fd was reported ready: tries the operation unless the wait was
    /// cancelled, and once it is over (or cancelled) unregisters the wait, then completes the
    /// future. A wait that is no longer registered (removed or replaced since the event was
    /// queued) does nothing, as a cancelled handle.
    pub fn run_sock_wait(&self, py: Python<'_>, wait: &Arc<SockWait>, side: Side) -> PyResult<()> {
        let fd = wait.fd();
        let registered = self.entries.with(py, |e| {
            e.get_mut(fd)
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
            let stale = self
                .entries
                .with(py, |e| e.get(fd).is_some_and(Entry::kernel_stale))?;
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

    /// Waits for I/O for at most `timeout` seconds (None: until something happens) and pushes
    /// what each ready fd asks to run on `queue`, as `to_ready` makes it. The queue is borrowed
    /// only after the wait: other threads push on it meanwhile. A wait that can block releases
    /// the GIL, with
    /// `sleeping` set meanwhile (see `LoopCore::sleeping`). Returns the number of ready fds
    /// and the nanoseconds spent waiting with the GIL released.
    pub fn poll<R>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        sleeping: &AtomicBool,
        queue: &GilCell<VecDeque<R>>,
        to_ready: impl Fn(IoEvent<'_, O>) -> R,
    ) -> PyResult<(usize, u64)> {
        let mut batch = self.batch.with(py, std::mem::take)?;
        batch.ready.clear();
        // Room for every watched fd (and the waker), as asyncio's selector asks for: with a
        // fixed-size buffer, 9,000 peers closing at once were seen 1,024 per iteration, and
        // the last of their connections were lost only 0.3 s later.
        let watched = self.entries.with(py, |e| e.watched)?;
        batch.events.reserve(watched + 1);
        let PollBatch { events, ready } = &mut batch;
        let mut waited_ns = 0;
        let waited = if timeout == Some(0.0) {
            self.poller.wait(events, timeout, ready)
        } else {
            sleeping.store(true, Ordering::SeqCst);
            let started = std::time::Instant::now();
            let result = py.detach(|| self.poller.wait(events, timeout, ready));
            sleeping.store(false, Ordering::SeqCst);
            waited_ns = started.elapsed().as_nanos() as u64;
            result
        };
        let outcome = if batch.ready.is_empty() {
            Ok(())
        } else {
            queue
                .with(py, |queue| {
                    self.dispatch(py, &batch.ready, |event| queue.push_back(to_ready(event)))
                })
                .and_then(|dispatched| dispatched)
        };
        let count = batch.len();
        self.batch.with(py, |buf| *buf = batch)?;
        match waited {
            Ok(true) => outcome.map(|()| (count, waited_ns)),
            // Interrupted by a signal: run Python's handlers now (SIGINT raises
            // KeyboardInterrupt out of run_forever, as in stock asyncio).
            Ok(false) => py.check_signals().map(|()| (0, waited_ns)),
            Err(err) => Err(io_error(py, err)),
        }
    }

    fn dispatch(
        &self,
        py: Python<'_>,
        ready: &[Readiness],
        mut queue: impl FnMut(IoEvent<'_, O>),
    ) -> PyResult<()> {
        self.entries.with(py, |e| {
            for event in ready {
                let Some(entry) = e.get_mut(event.fd) else {
                    continue;
                };
                entry.kernel = entry.kernel.fired();
                if let (true, Some(reader)) = (event.readable, &entry.reader) {
                    queue(IoEvent::Target(reader, Side::Read));
                }
                if let (true, Some(writer)) = (event.writable, &entry.writer) {
                    queue(IoEvent::Target(writer, Side::Write));
                }
                if let Some(owner) = &entry.owner {
                    if event.readable && entry.owner_interest.read {
                        queue(IoEvent::Owner(owner, Side::Read));
                    }
                    if event.writable && entry.owner_interest.write {
                        queue(IoEvent::Owner(owner, Side::Write));
                    }
                }
            }
        })
    }

    /// The loop closed the table: nothing will watch an fd again.
    pub fn is_closed(&self) -> bool {
        self.poller.is_closed()
    }

    /// Wakes a poll in progress or the next one, from any thread (asyncio's self-pipe write).
    pub fn wake(&self, py: Python<'_>) -> PyResult<()> {
        if self.poller.is_closed() {
            return Ok(());
        }
        self.poller.wake().map_err(|err| io_error(py, err))
    }

    /// What the cycle collector sees through the table: watches, owners and file objects.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(entries) = self.entries.peek() else {
            return Ok(());
        };
        for entry in &entries.by_fd {
            for target in [&entry.reader, &entry.writer].into_iter().flatten() {
                target.traverse(visit)?;
            }
            if let Some(owner) = &entry.owner {
                visit.call(owner)?;
            }
        }
        for fileobj in entries.fileobjs.values() {
            visit.call(fileobj)?;
        }
        if let Some(end) = self.iteration_end.peek() {
            for waiting in &end.waiting {
                visit.call(waiting)?;
            }
        }
        Ok(())
    }

    /// The loop stopped running: its fd watches go back under the cycle collector.
    pub fn track(&self, py: Python<'_>) -> PyResult<()> {
        self.entries.with(py, |entries| {
            for entry in &entries.by_fd {
                for target in [&entry.reader, &entry.writer].into_iter().flatten() {
                    if let IoTarget::Callback(handle) = target {
                        handle.track(py);
                    }
                }
            }
        })
    }

    /// Lets go of every watch and owner without closing the poller (the collector's
    /// `__clear__` of a loop; a `__del__` that closes the loop has usually done it already).
    pub fn clear(&self) {
        let entries = self.entries.peek_mut().map(|mut e| std::mem::take(&mut *e));
        drop(entries); // after the borrow: releasing may run `__del__`
        let waiting = self
            .iteration_end
            .peek_mut()
            .map(|mut end| std::mem::take(&mut end.waiting));
        drop(waiting);
    }

    /// Closes the poller and releases every watch and owner.
    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        let entries = self.entries.with(py, std::mem::take)?;
        self.poller.close();
        drop(entries);
        Ok(())
    }
}
