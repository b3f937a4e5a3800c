//! Socket transports: the state a TCP, Unix or UDP socket transport keeps between reads and
//! writes, and everything about it that does not depend on the kind of socket: the state
//! machine (attached, closing, connection lost, detached), write flow control, pausing reads,
//! closing, aborting, and the fd's entry in the loop's io table.
//!
//! Rust because it is consulted on every read and write. The reading and writing themselves
//! are in `stream.rs` (stream sockets) and `datagram.rs` (datagram sockets); which one a
//! transport is never changes (`Kind`). TLS (`tls.rs`) is a protocol over a stream one. The Python classes in
//! `oxloop/transports.py` (real `asyncio.Transport`/`asyncio.DatagramTransport` instances) each
//! own one `TransportCore` and keep the once-per-connection parts: construction, extra info,
//! `connection_lost`, closing the socket.
//!
//! Protocol callbacks run inside a copy of the contextvars context the transport was created
//! in, as they do on stock asyncio (where they run in the context of the reader handle). So
//! does all the work of a read or write event, not only the protocol calls: what it schedules
//! (`connection_lost` after EOF or an error, the protocol's own `call_soon`s) copies that
//! context too, as a `call_soon` made inside asyncio's reader callback does.
//!
//! The socket's fd stays open for as long as this object is attached to the loop: the Python
//! side closes the socket only after `_detach()`, so the loop never watches a closed fd number.

mod datagram;
mod flow_control;
mod stream;
pub(crate) mod tls;

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use pyo3::{PyTraverseError, PyVisit, intern};

use crate::buffer::BufferView;
use crate::gil_cell::GilCell;
use crate::handles::{call_in_context, copy_current_context};
use crate::io_table::Interest;
use crate::io_table::IoTable;
use crate::socket_io;
use datagram::{Datagram, QueuedDatagram};
use flow_control::{DEFAULT_HIGH_WATER, write_buffer_limits};
use stream::{Chunk, WriteData};

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const CONNLOST_WRITES_BEFORE_WARNING: u32 = 5;

/// The loop's io table as transports share it.
pub type TransportIo = Arc<IoTable<TransportCore>>;

/// What the kind of socket adds to the common state.
pub(crate) enum Kind {
    /// A stream socket: the data waiting to be written.
    Stream(VecDeque<Chunk>),
    /// A datagram socket. Boxed: most transports are streams, and the pointer keeps every
    /// stream transport a pymalloc size class smaller (memory per idle connection).
    Datagram(Box<Datagram>),
}

pub(crate) struct State {
    /// The loop (for the Python-level calls: `call_soon`, the exception handler,
    /// `create_future`), its io table, the protocol, the Python transport and the context:
    /// None once detached.
    pub event_loop: Option<Py<PyAny>>,
    io: Option<TransportIo>,
    pub protocol: Option<Py<PyAny>>,
    pub transport: Option<Py<PyAny>>,
    pub context: Option<Py<PyAny>>,
    /// True while a read or write event runs inside `context` (already entered).
    dispatching: bool,
    pub buffered_protocol: bool,
    pub kind: Kind,
    /// Bytes waiting to be written, for flow control.
    pub buffered: usize,
    high_water: usize,
    low_water: usize,
    protocol_paused: bool,
    /// `pause_reading()` was called.
    reading_paused: bool,
    pub closing: bool,
    pub eof: bool,
    /// Non-zero once `connection_lost` is scheduled; counts writes made after that.
    pub conn_lost: u32,
    /// The interest registered with the loop's poller.
    pub interest: Interest,
    /// Set while `loop.sendfile()` waits for the write buffer to drain.
    pub empty_waiter: Option<Py<PyAny>>,
}

impl State {
    fn new(
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        transport: &Bound<'_, PyAny>,
        kind: Kind,
    ) -> PyResult<Self> {
        Ok(Self {
            event_loop: Some(event_loop.clone().unbind()),
            io: None,
            protocol: Some(protocol.clone().unbind()),
            transport: Some(transport.clone().unbind()),
            context: Some(copy_current_context(py)?),
            dispatching: false,
            buffered_protocol: is_buffered_protocol(protocol)?,
            kind,
            buffered: 0,
            high_water: DEFAULT_HIGH_WATER,
            low_water: DEFAULT_HIGH_WATER / 4,
            protocol_paused: false,
            reading_paused: false,
            closing: false,
            eof: false,
            conn_lost: 0,
            interest: Interest::default(),
            empty_waiter: None,
        })
    }

    fn is_reading(&self) -> bool {
        !self.reading_paused && !self.closing
    }

    /// True if data waits to be written.
    pub fn has_pending(&self) -> bool {
        match &self.kind {
            Kind::Stream(chunks) => !chunks.is_empty(),
            Kind::Datagram(datagram) => !datagram.queue.is_empty(),
        }
    }

    /// Drops everything waiting to be written (moved out, to be released after the borrow).
    pub fn take_pending(&mut self) -> (VecDeque<Chunk>, VecDeque<QueuedDatagram>) {
        self.buffered = 0;
        match &mut self.kind {
            Kind::Stream(chunks) => (std::mem::take(chunks), VecDeque::new()),
            Kind::Datagram(datagram) => (VecDeque::new(), std::mem::take(&mut datagram.queue)),
        }
    }
}

impl Kind {
    /// The Python objects the kind holds besides queued data (the socket and the remote
    /// address of a datagram transport), moved out once detached.
    fn take_references(&mut self) -> [Option<Py<PyAny>>; 2] {
        match self {
            Kind::Stream(_) => [None, None],
            Kind::Datagram(datagram) => [datagram.sock.take(), datagram.address.take()],
        }
    }
}

#[pyclass(frozen, module = "oxloop._oxloop")]
pub struct TransportCore {
    fd: RawFd,
    state: GilCell<State>,
}

pub(crate) fn is_fatal_interrupt(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

fn is_buffered_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<bool> {
    static BUFFERED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let cls = BUFFERED.import(protocol.py(), "asyncio", "BufferedProtocol")?;
    protocol.is_instance(cls)
}

pub(crate) fn asyncio_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER.import(py, "asyncio.log", "logger")
}

impl TransportCore {
    #[inline]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket the Python transport owns; it is closed only
        // after `_detach()`, after which no method here issues a syscall on it (every I/O
        // path first checks that the transport is still attached or not yet lost). A stale
        // number would only make the syscall fail with EBADF, which is reported as OSError.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> R) -> PyResult<R> {
        self.state.with(py, f)
    }

    /// Registers the interest the state asks for with the loop's io table.
    pub(crate) fn sync_interest(
        &self,
        py: Python<'_>,
        slf: &Py<Self>,
        wanted: Interest,
    ) -> PyResult<()> {
        let io = self.with(py, |s| {
            if s.interest == wanted {
                return None;
            }
            s.interest = wanted;
            s.io.clone()
        })?;
        match io {
            Some(io) => io.set_owner_interest(py, self.fd, slf, wanted),
            None => Ok(()),
        }
    }

    pub(crate) fn set_reading(&self, py: Python<'_>, slf: &Py<Self>, read: bool) -> PyResult<()> {
        let write = self.with(py, |s| s.interest.write)?;
        self.sync_interest(py, slf, Interest { read, write })
    }

    pub(crate) fn set_writing(&self, py: Python<'_>, slf: &Py<Self>, write: bool) -> PyResult<()> {
        let read = self.with(py, |s| s.interest.read)?;
        self.sync_interest(py, slf, Interest { read, write })
    }

    pub(crate) fn transport_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.with(py, |s| s.transport.as_ref().map(|t| t.clone_ref(py)))
    }

    pub(crate) fn protocol_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.with(py, |s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    /// asyncio's `_fatal_error`: report (unless it is an OSError) and force-close. The report
    /// needs the Python transport for its context, so the Python side does it.
    pub(crate) fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal_interrupt(py, &err) {
            return Err(err);
        }
        match self.transport_object(py)? {
            Some(transport) => transport
                .bind(py)
                .call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))
                .map(drop),
            None => Ok(()),
        }
    }

    /// Calls `method(*args)` on the protocol, inside the transport's context.
    pub(crate) fn call_protocol<'py>(
        &self,
        py: Python<'py>,
        method: &Bound<'py, PyString>,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (protocol, context, dispatching) = self.with(py, |s| {
            (
                s.protocol.as_ref().map(|p| p.clone_ref(py)),
                s.context.as_ref().map(|c| c.clone_ref(py)),
                s.dispatching,
            )
        })?;
        let (Some(protocol), Some(context)) = (protocol, context) else {
            return Ok(py.None().into_bound(py));
        };
        let protocol = protocol.into_bound(py);
        if dispatching {
            // Entering a context that is already entered raises RuntimeError.
            return protocol.call_method1(method, args);
        }
        call_in_context(py, context.bind(py), || protocol.call_method1(method, args))
    }

    /// Runs the work of one read or write event inside the transport's context.
    fn dispatch(
        slf: &Bound<'_, Self>,
        event: impl FnOnce(&Bound<'_, Self>) -> PyResult<()>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let context = this.with(py, |s| {
            let context = s.context.as_ref().map(|c| c.clone_ref(py));
            s.dispatching = context.is_some();
            context
        })?;
        let Some(context) = context else {
            return event(slf);
        };
        let result = call_in_context(py, context.bind(py), || event(slf));
        this.with(py, |s| s.dispatching = false)?;
        result
    }

    /// Schedules the Python transport's `_call_connection_lost(exc)` for the next iteration.
    pub(crate) fn schedule_connection_lost(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        let (event_loop, transport) = self.with(py, |s| {
            (
                s.event_loop.as_ref().map(|l| l.clone_ref(py)),
                s.transport.as_ref().map(|t| t.clone_ref(py)),
            )
        })?;
        let (Some(event_loop), Some(transport)) = (event_loop, transport) else {
            return Ok(());
        };
        let callback = transport
            .bind(py)
            .getattr(intern!(py, "_call_connection_lost"))?;
        event_loop
            .bind(py)
            .call_method1(intern!(py, "call_soon"), (callback, exc))
            .map(drop)
    }

    /// True while `loop.sendfile()` drives the socket: the transport has handed its fd to
    /// `sock_sendfile` (asyncio takes the transport out of `loop._transports` meanwhile).
    pub(crate) fn lends_fd(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.empty_waiter.is_some())
    }

    /// The socket is readable (called by the loop).
    pub fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (active, datagram) = this.with(py, |s| {
            (
                s.interest.read && s.conn_lost == 0 && s.event_loop.is_some(),
                matches!(s.kind, Kind::Datagram(_)),
            )
        })?;
        if !active {
            // Paused or closed by a callback that ran earlier in this iteration.
            return Ok(());
        }
        if datagram {
            Self::dispatch(slf, Self::datagram_readable)
        } else {
            Self::dispatch(slf, Self::stream_readable)
        }
    }

    /// The socket is writable (called by the loop).
    pub fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (active, datagram) = this.with(py, |s| {
            (
                s.interest.write && s.conn_lost == 0 && s.has_pending(),
                matches!(s.kind, Kind::Datagram(_)),
            )
        })?;
        if !active {
            return Ok(());
        }
        if datagram {
            Self::dispatch(slf, Self::datagram_writable)
        } else {
            Self::dispatch(slf, Self::stream_writable)
        }
    }

    /// After a flush: resume the protocol at the low mark; once the buffer is empty, stop
    /// watching for writability and finish what waited for it (sendfile, close, write_eof).
    pub(crate) fn after_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.maybe_resume_protocol(py)?;
        let (drained, closing, eof, waiter) = this.with(py, |s| {
            (
                !s.has_pending(),
                s.closing,
                s.eof,
                s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        })?;
        if !drained {
            return Ok(());
        }
        this.set_writing(py, &slf.clone().unbind(), false)?;
        if let Some(waiter) = waiter {
            waiter
                .bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        if closing {
            if let Some(transport) = this.transport_object(py)? {
                transport
                    .bind(py)
                    .call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
            }
        } else if eof {
            socket_io::shutdown_write(py, this.fd())?;
        }
        Ok(())
    }
}

fn socket_fd(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let fd: RawFd = sock.call_method0(intern!(sock.py(), "fileno"))?.extract()?;
    if fd < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "the socket is closed",
        ));
    }
    Ok(fd)
}

impl TransportCore {
    /// Makes the core and has the loop attach it to its io table (`LoopCore._attach_transport`,
    /// which calls `attach`): the loop is the one that knows its table.
    fn new_attached(event_loop: &Bound<'_, PyAny>, fd: RawFd, state: State) -> PyResult<Py<Self>> {
        let py = event_loop.py();
        let this = Py::new(
            py,
            Self {
                fd,
                state: GilCell::new(state),
            },
        )?;
        event_loop.call_method1(intern!(py, "_attach_transport"), (&this,))?;
        Ok(this)
    }

    /// Claims the fd in `io` for this transport.
    pub(crate) fn attach(slf: &Bound<'_, Self>, io: &TransportIo) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        io.attach_owner(py, this.fd, &slf.clone().unbind())?;
        let previous = this.with(py, |s| s.io.replace(Arc::clone(io)))?;
        drop(previous);
        Ok(())
    }
}

#[pymethods]
impl TransportCore {
    /// Makes the transport for `sock` (a connected, non-blocking socket) and claims its fd in
    /// the loop. Reading starts with `_start_reading()`, after `connection_made`.
    #[staticmethod]
    fn create(
        event_loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        transport: &Bound<'_, PyAny>,
    ) -> PyResult<Py<Self>> {
        let py = sock.py();
        let fd = socket_fd(sock)?;
        let kind = Kind::Stream(VecDeque::new());
        let state = State::new(py, event_loop, protocol, transport, kind)?;
        Self::new_attached(event_loop, fd, state)
    }

    /// Makes the transport for a datagram socket; `address` is the fixed destination given
    /// as `remote_addr`, `connected` says whether the socket has a peer.
    #[staticmethod]
    fn create_datagram(
        event_loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        transport: &Bound<'_, PyAny>,
        address: Option<Py<PyAny>>,
        connected: bool,
    ) -> PyResult<Py<Self>> {
        let py = sock.py();
        let fd = socket_fd(sock)?;
        let kind = Kind::Datagram(Box::new(Datagram {
            sock: Some(sock.clone().unbind()),
            address,
            connected,
            queue: VecDeque::new(),
        }));
        let state = State::new(py, event_loop, protocol, transport, kind)?;
        Self::new_attached(event_loop, fd, state)
    }

    /// Starts reading, unless `pause_reading()` or `close()` came first.
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.with(py, |s| s.is_reading() && s.event_loop.is_some())? {
            this.set_reading(py, &slf.clone().unbind(), true)?;
        }
        Ok(())
    }

    /// Writes `data` (bytes-like): sent now if possible, else buffered.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let data = if let Ok(bytes) = data.cast::<PyBytes>() {
            WriteData::Bytes(bytes.clone().unbind())
        } else if data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<pyo3::types::PyMemoryView>()
        {
            WriteData::View(BufferView::readable(data)?)
        } else {
            let name = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{name}'"
            )));
        };
        slf.get().write_bytes(py, &slf.clone().unbind(), data)
    }

    /// Writes each bytes-like item of `list_of_data`, as one buffer.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        slf.get().check_writelines(py)?;
        let joined = stream::join_for_writelines(list_of_data)?;
        Self::write(slf, &joined)
    }

    /// Sends one datagram to `addr` (or to the fixed remote address), buffering it if the
    /// socket is not writable now.
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        Self::datagram_sendto(slf, data, addr)
    }

    /// Closes after the buffered data is sent; `connection_lost(None)` follows.
    pub(crate) fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let unbound = slf.clone().unbind();
        let lost_now = this.with(py, |s| {
            if s.closing {
                return None;
            }
            s.closing = true;
            let lost_now = !s.has_pending();
            if lost_now {
                s.conn_lost += 1;
            }
            Some(lost_now)
        })?;
        let Some(lost_now) = lost_now else {
            return Ok(());
        };
        if lost_now {
            this.sync_interest(py, &unbound, Interest::default())?;
            this.schedule_connection_lost(py, py.None())
        } else {
            this.set_reading(py, &unbound, false)
        }
    }

    /// asyncio's `_force_close`: drop the buffer, stop reading, schedule `connection_lost`.
    fn _force_close(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let dropped = this.with(py, |s| {
            if s.conn_lost != 0 {
                return None;
            }
            s.closing = true;
            s.conn_lost += 1;
            Some(s.take_pending())
        })?;
        let Some(dropped) = dropped else {
            return Ok(());
        };
        drop(dropped);
        this.sync_interest(py, &slf.clone().unbind(), Interest::default())?;
        this.schedule_connection_lost(py, exc)
    }

    /// Shuts down the write side once the buffer is sent.
    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        let shutdown_now = self.with(py, |s| {
            if s.closing || s.eof {
                return false;
            }
            s.eof = true;
            !s.has_pending()
        })?;
        if shutdown_now {
            socket_io::shutdown_write(py, self.fd())?;
        }
        Ok(())
    }

    fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.closing)
    }

    fn is_reading(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.is_reading())
    }

    /// Stops reading; True if this changed anything (the caller logs in debug mode).
    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let changed = this.with(py, |s| {
            let changed = s.is_reading();
            s.reading_paused = true;
            changed
        })?;
        if changed {
            this.set_reading(py, &slf.clone().unbind(), false)?;
        }
        Ok(changed)
    }

    /// Resumes reading; True if this changed anything.
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let changed = this.with(py, |s| {
            let changed = !s.closing && s.reading_paused;
            if changed {
                s.reading_paused = false;
            }
            changed
        })?;
        if changed {
            this.set_reading(py, &slf.clone().unbind(), true)?;
        }
        Ok(changed)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| s.buffered)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        self.with(py, |s| (s.low_water, s.high_water))
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<isize>,
        low: Option<isize>,
    ) -> PyResult<()> {
        let (high, low) = write_buffer_limits(high, low)?;
        self.with(py, |s| {
            s.high_water = high;
            s.low_water = low;
        })?;
        self.maybe_pause_protocol(py)
    }

    fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.protocol_object(py)
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = is_buffered_protocol(protocol)?;
        let previous = self.with(py, |s| {
            s.buffered_protocol = buffered;
            s.protocol.replace(protocol.clone().unbind())
        })?;
        drop(previous);
        Ok(())
    }

    /// For `loop.sendfile()`: a future done when the write buffer is empty.
    fn _make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (event_loop, busy, empty) = self.with(py, |s| {
            (
                s.event_loop.as_ref().map(|l| l.clone_ref(py)),
                s.empty_waiter.is_some(),
                !s.has_pending(),
            )
        })?;
        if busy {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let Some(event_loop) = event_loop else {
            return Err(PyRuntimeError::new_err("Transport is closed"));
        };
        let waiter = event_loop
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        if empty {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        let waiter = waiter.unbind();
        self.with(py, |s| s.empty_waiter = Some(waiter.clone_ref(py)))?;
        Ok(waiter)
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
        let previous = self.with(py, |s| s.empty_waiter.take())?;
        drop(previous);
        Ok(())
    }

    /// The waiter `sendfile` set, taken out (the Python side fails it on connection loss).
    fn _take_empty_waiter(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.with(py, |s| s.empty_waiter.take())
    }

    /// Whether the poller watches the fd for reading / writing (for the transport's repr).
    fn _polling(&self, py: Python<'_>) -> PyResult<(bool, bool)> {
        self.with(py, |s| (s.interest.read, s.interest.write))
    }

    /// Releases the fd in the loop and every reference; called before the socket is closed.
    fn _detach(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let released = this.with(py, |s| {
            s.interest = Interest::default();
            (
                s.io.take(),
                s.event_loop.take(),
                s.protocol.take(),
                s.transport.take(),
                s.context.take(),
                s.take_pending(),
                s.kind.take_references(),
            )
        })?;
        if let Some(io) = &released.0 {
            io.detach_owner(py, this.fd, &slf.clone().unbind())?;
        }
        drop(released);
        Ok(())
    }

    /// True between the protocol's `pause_writing()` and `resume_writing()`.
    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.protocol_paused)
    }

    #[getter]
    fn _fd(&self) -> RawFd {
        self.fd
    }

    /// The Python transport (`oxloop.transports.SocketTransport`), None once detached.
    #[getter]
    fn _transport(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.transport_object(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(state) = self.state.peek() else {
            return Ok(());
        };
        for object in [
            state.event_loop.as_ref(),
            state.protocol.as_ref(),
            state.transport.as_ref(),
            state.context.as_ref(),
            state.empty_waiter.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            visit.call(object)?;
        }
        if let Kind::Datagram(datagram) = &state.kind {
            if let Some(sock) = &datagram.sock {
                visit.call(sock)?;
            }
            if let Some(address) = &datagram.address {
                visit.call(address)?;
            }
            for (_, addr) in &datagram.queue {
                if let Some(addr) = addr {
                    visit.call(addr)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let released = self.state.peek_mut().map(|mut state| {
            (
                state.event_loop.take(),
                state.protocol.take(),
                state.transport.take(),
                state.context.take(),
                state.empty_waiter.take(),
                state.take_pending(),
                state.kind.take_references(),
            )
        });
        drop(released); // after the borrow: dropping the transport may run its `__del__`
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle connection: a stream transport's core stays in pymalloc's 120-byte
    /// class or below (measured against uvloop's RSS per connection; see the README).
    #[test]
    fn state_fits_its_size_class() {
        assert!(
            std::mem::size_of::<State>() <= 120,
            "{}",
            std::mem::size_of::<State>()
        );
    }
}
