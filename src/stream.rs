//! Socket stream transports (TCP and Unix stream sockets): where bytes go from a readable
//! socket to the protocol's `data_received`/`buffer_updated`, and from `write()` to the socket.
//!
//! Rust because this runs per read and per write. The Python class
//! `oxloop.transports.SocketTransport` (an `asyncio.Transport`) owns one `StreamTransport` and
//! keeps the once-per-connection parts: construction, extra info, `connection_lost`, closing
//! the socket. The semantics are those of asyncio's `_SelectorSocketTransport`:
//!
//! - Reads: one `recv` per readiness event into the loop's reusable read buffer, then one
//!   `bytes` of exactly the size read goes to `data_received`. A `BufferedProtocol` gets
//!   `recv_into` straight into the buffer its `get_buffer` returned.
//! - Writes: with nothing buffered, `write()` sends at once and keeps only what the kernel did
//!   not take (a `bytes` object is kept by reference, not copied). Buffered data goes out in one
//!   vectored `sendmsg` when the socket turns writable.
//! - Flow control: `pause_writing`/`resume_writing` on the protocol at the high and low marks.
//!
//! Protocol callbacks run inside a copy of the contextvars context the transport was created
//! in, as they do on stock asyncio (where they run in the context of the reader handle).
//!
//! The socket's fd stays open for as long as this object is attached to the loop: the Python
//! side closes the socket only after `_detach()`, so the loop never watches a closed fd number.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use pyo3::{PyTraverseError, PyVisit, intern};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, Shutdown};

use crate::event_loop::LoopCore;
use crate::gil_cell::GilCell;
use crate::handles::{call_in_context, copy_current_context};
use crate::poller::Interest;

/// asyncio's `_SelectorTransport.max_size`: the most one read returns.
pub const READ_SIZE: usize = 256 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const CONNLOST_WRITES_BEFORE_WARNING: u32 = 5;
/// Buffers passed to one `sendmsg`; Linux's IOV_MAX is 1024.
const MAX_IOVECS: usize = 1024;
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// Data waiting to be written.
enum Chunk {
    /// An immutable `bytes` object, written from an offset: no copy.
    Shared(Py<PyBytes>, usize),
    /// A copy of mutable data (`bytearray`, `memoryview`), written from an offset.
    Owned(Vec<u8>, usize),
}

impl Chunk {
    fn remaining<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        match self {
            Chunk::Shared(bytes, offset) => &bytes.as_bytes(py)[*offset..],
            Chunk::Owned(data, offset) => &data[*offset..],
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Shared(_, offset) | Chunk::Owned(_, offset) => *offset += n,
        }
    }
}

/// What happens after a write call changed the state: decided under the borrow, done after.
enum WriteOutcome {
    Done,
    Failed(PyErr),
    Buffered { register: bool },
}

struct State {
    /// The loop, the protocol, the Python transport and the context: None once detached.
    event_loop: Option<Py<LoopCore>>,
    protocol: Option<Py<PyAny>>,
    transport: Option<Py<PyAny>>,
    context: Option<Py<PyAny>>,
    buffered_protocol: bool,
    chunks: VecDeque<Chunk>,
    buffered: usize,
    high_water: usize,
    low_water: usize,
    protocol_paused: bool,
    /// `pause_reading()` was called.
    reading_paused: bool,
    closing: bool,
    eof: bool,
    /// Non-zero once `connection_lost` is scheduled; counts writes made after that.
    conn_lost: u32,
    /// The interest registered with the loop's poller.
    interest: Interest,
    /// Set while `loop.sendfile()` waits for the write buffer to drain.
    empty_waiter: Option<Py<PyAny>>,
}

impl State {
    fn is_reading(&self) -> bool {
        !self.reading_paused && !self.closing
    }
}

#[pyclass(frozen, module = "oxloop._oxloop")]
pub struct StreamTransport {
    fd: RawFd,
    state: GilCell<State>,
}

fn is_fatal_interrupt(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

fn is_buffered_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<bool> {
    static BUFFERED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let cls = BUFFERED.import(protocol.py(), "asyncio", "BufferedProtocol")?;
    protocol.is_instance(cls)
}

fn asyncio_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER.import(py, "asyncio.log", "logger")
}

impl StreamTransport {
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket the Python transport owns; it is closed only
        // after `_detach()`, after which no method here issues a syscall on it (every I/O
        // path first checks that the transport is still attached or not yet lost). A stale
        // number would only make the syscall fail with EBADF, which is reported as OSError.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&mut State) -> R) -> PyResult<R> {
        self.state.with(py, f)
    }

    /// Registers the interest the state asks for with the loop's poller.
    fn sync_interest(&self, py: Python<'_>, slf: &Py<Self>, wanted: Interest) -> PyResult<()> {
        let event_loop = self.with(py, |s| {
            if s.interest == wanted {
                return None;
            }
            s.interest = wanted;
            s.event_loop.as_ref().map(|l| l.clone_ref(py))
        })?;
        match event_loop {
            Some(event_loop) => event_loop
                .get()
                .set_stream_interest(py, self.fd, slf, wanted),
            None => Ok(()),
        }
    }

    fn set_reading(&self, py: Python<'_>, slf: &Py<Self>, read: bool) -> PyResult<()> {
        let write = self.with(py, |s| s.interest.write)?;
        self.sync_interest(py, slf, Interest { read, write })
    }

    fn set_writing(&self, py: Python<'_>, slf: &Py<Self>, write: bool) -> PyResult<()> {
        let read = self.with(py, |s| s.interest.read)?;
        self.sync_interest(py, slf, Interest { read, write })
    }

    fn transport_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.with(py, |s| s.transport.as_ref().map(|t| t.clone_ref(py)))
    }

    fn protocol_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.with(py, |s| s.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    /// asyncio's `_fatal_error`: report (unless it is an OSError) and force-close. The report
    /// needs the Python transport for its context, so the Python side does it.
    fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
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
    fn call_protocol<'py>(
        &self,
        py: Python<'py>,
        method: &Bound<'py, PyString>,
        args: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (protocol, context) = self.with(py, |s| {
            (
                s.protocol.as_ref().map(|p| p.clone_ref(py)),
                s.context.as_ref().map(|c| c.clone_ref(py)),
            )
        })?;
        let (Some(protocol), Some(context)) = (protocol, context) else {
            return Ok(py.None().into_bound(py));
        };
        let protocol = protocol.into_bound(py);
        call_in_context(py, context.bind(py), || protocol.call_method1(method, args))
    }

    /// asyncio's `_maybe_pause_protocol`.
    fn maybe_pause_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let pause = self.with(py, |s| {
            let pause = s.buffered > s.high_water && !s.protocol_paused;
            if pause {
                s.protocol_paused = true;
            }
            pause
        })?;
        if pause {
            let result = self.call_protocol(py, intern!(py, "pause_writing"), ());
            self.report_flow_control_error(py, result, "protocol.pause_writing() failed")?;
        }
        Ok(())
    }

    /// asyncio's `_maybe_resume_protocol`.
    fn maybe_resume_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let resume = self.with(py, |s| {
            let resume = s.protocol_paused && s.buffered <= s.low_water;
            if resume {
                s.protocol_paused = false;
            }
            resume
        })?;
        if resume {
            let result = self.call_protocol(py, intern!(py, "resume_writing"), ());
            self.report_flow_control_error(py, result, "protocol.resume_writing() failed")?;
        }
        Ok(())
    }

    fn report_flow_control_error(
        &self,
        py: Python<'_>,
        result: PyResult<Bound<'_, PyAny>>,
        message: &str,
    ) -> PyResult<()> {
        let Err(err) = result else {
            return Ok(());
        };
        if is_fatal_interrupt(py, &err) {
            return Err(err);
        }
        let (event_loop, transport, protocol) = self.with(py, |s| {
            (
                s.event_loop.as_ref().map(|l| l.clone_ref(py)),
                s.transport.as_ref().map(|t| t.clone_ref(py)),
                s.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        })?;
        let Some(event_loop) = event_loop else {
            return Ok(());
        };
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", transport)?;
        context.set_item("protocol", protocol)?;
        event_loop
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))
            .map(drop)
    }

    /// Schedules the Python transport's `_call_connection_lost(exc)` for the next iteration.
    fn schedule_connection_lost(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
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

    fn write_bytes(&self, py: Python<'_>, slf: &Py<Self>, data: Chunk) -> PyResult<()> {
        let len = data.remaining(py).len();
        let lost = self.with(py, |s| -> PyResult<Option<u32>> {
            if s.eof {
                return Err(PyRuntimeError::new_err(
                    "Cannot call write() after write_eof()",
                ));
            }
            if s.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err(
                    "unable to write; sendfile is in progress",
                ));
            }
            if len == 0 || s.conn_lost == 0 {
                return Ok(None);
            }
            s.conn_lost += 1;
            Ok(Some(s.conn_lost - 1))
        })??;
        if len == 0 {
            return Ok(());
        }
        if let Some(earlier_writes) = lost {
            if earlier_writes >= CONNLOST_WRITES_BEFORE_WARNING {
                asyncio_logger(py)?
                    .call_method1("warning", ("socket.send() raised exception.",))?;
            }
            return Ok(());
        }
        let outcome = self.with(py, |s| {
            let mut data = data;
            let register = s.chunks.is_empty();
            if register {
                match send_all_or_some(self.fd(), data.remaining(py)) {
                    Ok(n) if n == len => return WriteOutcome::Done,
                    Ok(n) => data.advance(n),
                    Err(err) => {
                        return WriteOutcome::Failed(PyErr::from(std::io::Error::from(err)));
                    }
                }
            }
            s.buffered += data.remaining(py).len();
            s.chunks.push_back(data);
            WriteOutcome::Buffered { register }
        })?;
        match outcome {
            WriteOutcome::Done => Ok(()),
            WriteOutcome::Failed(err) => {
                self.fatal_error(py, err, "Fatal write error on socket transport")
            }
            WriteOutcome::Buffered { register } => {
                if register {
                    self.set_writing(py, slf, true)?;
                }
                self.maybe_pause_protocol(py)
            }
        }
    }

    /// The socket is readable: read once and hand the data to the protocol.
    pub fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (active, buffered_protocol) = this.with(py, |s| {
            (
                s.interest.read && s.conn_lost == 0 && s.event_loop.is_some(),
                s.buffered_protocol,
            )
        })?;
        if !active {
            // Paused or closed by a callback that ran earlier in this iteration.
            return Ok(());
        }
        if buffered_protocol {
            this.read_into_protocol_buffer(slf)
        } else {
            this.read_to_data_received(slf)
        }
    }

    fn read_to_data_received(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let event_loop = self.with(py, |s| s.event_loop.as_ref().map(|l| l.clone_ref(py)))?;
        let Some(event_loop) = event_loop else {
            return Ok(());
        };
        let received =
            event_loop
                .get()
                .with_read_buffer(py, |buf| match recv_retrying(self.fd(), buf) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some(PyBytes::new(py, &buf[..n]))),
                    Err(err) => Err(err),
                })?;
        let data = match received {
            Ok(Some(data)) => data,
            Ok(None) => return self.on_eof(slf),
            Err(Errno::AGAIN | Errno::INTR) => return Ok(()),
            Err(err) => {
                let err = PyErr::from(std::io::Error::from(err));
                return self.fatal_error(py, err, "Fatal read error on socket transport");
            }
        };
        if let Err(err) = self.call_protocol(py, intern!(py, "data_received"), (data,)) {
            self.fatal_error(
                py,
                err,
                "Fatal error: protocol.data_received() call failed.",
            )?;
        }
        Ok(())
    }

    fn read_into_protocol_buffer(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let buffer = self
            .call_protocol(py, intern!(py, "get_buffer"), (-1,))
            .and_then(|buf| {
                if buf.len()? == 0 {
                    Err(PyRuntimeError::new_err(
                        "get_buffer() returned an empty buffer",
                    ))
                } else {
                    Ok(buf)
                }
            });
        let buffer = match buffer {
            Ok(buffer) => buffer,
            Err(err) => {
                return self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.get_buffer() call failed.",
                );
            }
        };
        let received = match WritableBuffer::get(&buffer) {
            Ok(mut view) => recv_retrying(self.fd(), view.as_mut_slice())
                .map_err(|err| PyErr::from(std::io::Error::from(err))),
            Err(err) => Err(err),
        };
        let nbytes = match received {
            Ok(0) => return self.on_eof(slf),
            Ok(n) => n,
            Err(err)
                if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)
                    || err.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
            {
                return Ok(());
            }
            Err(err) => return self.fatal_error(py, err, "Fatal read error on socket transport"),
        };
        if let Err(err) = self.call_protocol(py, intern!(py, "buffer_updated"), (nbytes,)) {
            self.fatal_error(
                py,
                err,
                "Fatal error: protocol.buffer_updated() call failed.",
            )?;
        }
        Ok(())
    }

    /// asyncio's `_read_ready__on_eof`: keep the write side open only if the protocol asks.
    fn on_eof(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let keep_open = match self
            .call_protocol(py, intern!(py, "eof_received"), ())
            .and_then(|r| r.is_truthy())
        {
            Ok(keep_open) => keep_open,
            Err(err) => {
                return self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.eof_received() call failed.",
                );
            }
        };
        if keep_open {
            self.set_reading(py, &slf.clone().unbind(), false)
        } else {
            Self::close(slf)
        }
    }

    /// The socket is writable: send as much of the buffer as the kernel takes.
    pub fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let unbound = slf.clone().unbind();
        let sent = this.with(py, |s| {
            if !s.interest.write || s.conn_lost != 0 || s.chunks.is_empty() {
                return None;
            }
            let result = send_chunks(this.fd(), py, &s.chunks);
            if let Ok(n) = result {
                consume(py, &mut s.chunks, n);
                s.buffered -= n;
            }
            Some(result)
        })?;
        match sent {
            None => Ok(()),
            Some(Err(Errno::AGAIN | Errno::INTR)) => Ok(()),
            Some(Err(err)) => {
                let cleared = this.with(py, |s| {
                    s.buffered = 0;
                    std::mem::take(&mut s.chunks)
                })?;
                drop(cleared);
                this.set_writing(py, &unbound, false)?;
                let err = PyErr::from(std::io::Error::from(err));
                let waiter = this.with(py, |s| s.empty_waiter.as_ref().map(|w| w.clone_ref(py)))?;
                let exc = err.clone_ref(py);
                this.fatal_error(py, err, "Fatal write error on socket transport")?;
                if let Some(waiter) = waiter {
                    waiter
                        .bind(py)
                        .call_method1(intern!(py, "set_exception"), (exc.into_value(py),))?;
                }
                Ok(())
            }
            Some(Ok(_)) => {
                this.maybe_resume_protocol(py)?;
                let (drained, closing, eof, waiter) = this.with(py, |s| {
                    (
                        s.chunks.is_empty(),
                        s.closing,
                        s.eof,
                        s.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                    )
                })?;
                if !drained {
                    return Ok(());
                }
                this.set_writing(py, &unbound, false)?;
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
                    rustix::net::shutdown(this.fd(), Shutdown::Write)
                        .map_err(|e| PyErr::from(std::io::Error::from(e)))?;
                }
                Ok(())
            }
        }
    }
}

/// `send` with MSG_NOSIGNAL, retried on EINTR; EAGAIN counts as nothing sent.
fn send_all_or_some(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::send(fd, data, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            other => return other,
        }
    }
}

fn recv_retrying(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::empty()) {
            Err(Errno::INTR) => continue,
            other => return other.map(|(n, _)| n),
        }
    }
}

/// One vectored `sendmsg` of the queued chunks (at most `MAX_IOVECS` of them).
fn send_chunks(
    fd: BorrowedFd<'_>,
    py: Python<'_>,
    chunks: &VecDeque<Chunk>,
) -> Result<usize, Errno> {
    let slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .take(MAX_IOVECS)
        .map(|chunk| IoSlice::new(chunk.remaining(py)))
        .collect();
    rustix::net::sendmsg(
        fd,
        &slices,
        &mut SendAncillaryBuffer::default(),
        SendFlags::NOSIGNAL,
    )
}

/// Drops the first `n` bytes of the queue. Finished `bytes` chunks are released here: a
/// `bytes` object has no finaliser, so releasing one under the state's borrow cannot re-enter.
fn consume(py: Python<'_>, chunks: &mut VecDeque<Chunk>, mut n: usize) {
    while n > 0 {
        let Some(front) = chunks.front_mut() else {
            return;
        };
        let left = front.remaining(py).len();
        if n < left {
            front.advance(n);
            return;
        }
        n -= left;
        chunks.pop_front();
    }
}

/// A writable, contiguous view of a Python buffer (`get_buffer()`'s result), released on drop.
struct WritableBuffer {
    view: Box<ffi::Py_buffer>,
}

impl WritableBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view: Box<ffi::Py_buffer> = Box::new(ffi::Py_buffer::new());
        // SAFETY: GIL held; `view` is a valid, writable Py_buffer struct. On success the
        // exporter filled it and we release it exactly once in `drop`.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_WRITABLE) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self { view })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &mut [];
        }
        // SAFETY: PyBUF_WRITABLE without PyBUF_STRIDES asks for a C-contiguous, writable
        // buffer of `len` bytes at `buf`, valid until the view is released in `drop`.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for WritableBuffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once;
        // the GIL is held by every caller (views live only inside a read callback).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}

fn write_buffer_limits(high: Option<isize>, low: Option<isize>) -> PyResult<(usize, usize)> {
    let high = match (high, low) {
        (Some(high), _) => high,
        (None, None) => DEFAULT_HIGH_WATER as isize,
        (None, Some(low)) => low.saturating_mul(4),
    };
    let low = low.unwrap_or(high / 4);
    if !(high >= low && low >= 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "high ({high}) must be >= low ({low}) must be >= 0"
        )));
    }
    Ok((high as usize, low as usize))
}

#[pymethods]
impl StreamTransport {
    /// Makes the transport for `sock` (a connected, non-blocking socket) and claims its fd in
    /// the loop. Reading starts with `_start_reading()`, after `connection_made`.
    #[staticmethod]
    fn create(
        event_loop: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        transport: &Bound<'_, PyAny>,
    ) -> PyResult<Py<Self>> {
        let py = sock.py();
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        if fd < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "the socket is closed",
            ));
        }
        let state = State {
            event_loop: Some(event_loop.clone().unbind()),
            protocol: Some(protocol.clone().unbind()),
            transport: Some(transport.clone().unbind()),
            context: Some(copy_current_context(py)?),
            buffered_protocol: is_buffered_protocol(protocol)?,
            chunks: VecDeque::new(),
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
        };
        let this = Py::new(
            py,
            Self {
                fd,
                state: GilCell::new(state),
            },
        )?;
        event_loop.get().attach_stream(py, fd, &this)?;
        Ok(this)
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
        let chunk = if let Ok(bytes) = data.cast::<PyBytes>() {
            Chunk::Shared(bytes.clone().unbind(), 0)
        } else if let Ok(array) = data.cast::<PyByteArray>() {
            Chunk::Owned(array.to_vec(), 0)
        } else if data.is_instance_of::<pyo3::types::PyMemoryView>() {
            let copy = py
                .get_type::<PyBytes>()
                .call1((data,))?
                .cast_into::<PyBytes>()?;
            Chunk::Shared(copy.unbind(), 0)
        } else {
            let name = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{name}'"
            )));
        };
        slf.get().write_bytes(py, &slf.clone().unbind(), chunk)
    }

    /// Writes each bytes-like item of `list_of_data`, as one buffer.
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        Self::write(slf, &joined)
    }

    /// Closes after the buffered data is sent; `connection_lost(None)` follows.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let unbound = slf.clone().unbind();
        let lost_now = this.with(py, |s| {
            if s.closing {
                return None;
            }
            s.closing = true;
            let lost_now = s.chunks.is_empty();
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
            s.buffered = 0;
            Some(std::mem::take(&mut s.chunks))
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
            s.chunks.is_empty()
        })?;
        if shutdown_now {
            rustix::net::shutdown(self.fd(), Shutdown::Write)
                .map_err(|e| PyErr::from(std::io::Error::from(e)))?;
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
                s.chunks.is_empty(),
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
            s.buffered = 0;
            (
                s.event_loop.take(),
                s.protocol.take(),
                s.transport.take(),
                s.context.take(),
                std::mem::take(&mut s.chunks),
            )
        })?;
        if let Some(event_loop) = &released.0 {
            event_loop
                .get()
                .detach_stream(py, this.fd, &slf.clone().unbind())?;
        }
        drop(released);
        Ok(())
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
            &state.event_loop.as_ref().map(|l| l.as_any()),
            &state.protocol.as_ref(),
            &state.transport.as_ref(),
            &state.context.as_ref(),
            &state.empty_waiter.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            visit.call(*object)?;
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
            )
        });
        drop(released); // after the borrow: dropping the transport may run its `__del__`
    }
}
