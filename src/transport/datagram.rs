//! The datagram kind of socket transports (UDP and Unix datagram sockets), with the semantics
//! of asyncio's `_SelectorDatagramTransport`: one `recvfrom` per readiness event to
//! `datagram_received(data, addr)`; `sendto` sends at once when nothing is queued, else queues
//! the datagram until the socket turns writable; socket errors go to `error_received`.
//!
//! Rust because it runs per datagram. The system calls go through the Python socket's own
//! `recvfrom`/`send`/`sendto` (C methods, no Python frame): they own the conversion between
//! socket addresses and Python tuples for every address family, which we do not redo.

use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyOSError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use std::collections::VecDeque;

use super::{CONNLOST_WRITES_BEFORE_WARNING, Kind, State, TransportCore, asyncio_logger};
use crate::socket_io::READ_SIZE;
use crate::version;

/// The header size asyncio 3.13+ counts per queued datagram in `get_write_buffer_size()`.
const DATAGRAM_HEADER_SIZE: usize = 8;

/// A queued datagram and its destination (None: the socket's peer).
pub(crate) type QueuedDatagram = (Py<PyBytes>, Option<Py<PyAny>>);

/// What a datagram transport keeps besides the common state.
pub(crate) struct Datagram {
    /// The Python socket: datagrams go through its `recvfrom`/`sendto`, which own the
    /// conversion between socket addresses and Python tuples. None once detached.
    pub sock: Option<Py<PyAny>>,
    /// The address given to `create_datagram_endpoint(remote_addr=...)`, if any.
    pub address: Option<Py<PyAny>>,
    /// True if the socket is connected (has a peer): datagrams go out with `send`.
    pub connected: bool,
    /// Datagrams waiting for the socket to turn writable, with their destinations.
    pub queue: VecDeque<QueuedDatagram>,
}

impl State {
    fn datagram(&self) -> Option<&Datagram> {
        match &self.kind {
            Kind::Datagram(datagram) => Some(datagram),
            Kind::Stream(_) => None,
        }
    }

    fn datagram_mut(&mut self) -> Option<&mut Datagram> {
        match &mut self.kind {
            Kind::Datagram(datagram) => Some(datagram),
            Kind::Stream(_) => None,
        }
    }
}

fn would_block(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py)
}

/// What `sendto` does once the checks passed, decided under the state's borrow.
enum SendPlan {
    /// Nothing queued: try the socket now.
    Now { sock: Py<PyAny>, connected: bool },
    /// Datagrams are queued: this one waits behind them.
    Queue,
    /// The transport is closed and has a fixed peer: drop it, warning after a few.
    Dropped { warn: bool },
}

impl TransportCore {
    /// Reads one datagram and hands it to the protocol.
    pub(crate) fn datagram_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sock = this.with(py, |s| {
            s.datagram()
                .and_then(|d| d.sock.as_ref().map(|sock| sock.clone_ref(py)))
        })?;
        let Some(sock) = sock else {
            return Ok(());
        };
        match sock
            .bind(py)
            .call_method1(intern!(py, "recvfrom"), (READ_SIZE,))
        {
            Ok(received) => {
                let (data, addr): (Bound<'_, PyAny>, Bound<'_, PyAny>) = received.extract()?;
                this.call_protocol(py, intern!(py, "datagram_received"), (data, addr))
                    .map(drop)
            }
            Err(err) if would_block(py, &err) => Ok(()),
            Err(err) if err.is_instance_of::<PyOSError>(py) => this
                .call_protocol(py, intern!(py, "error_received"), (err.into_value(py),))
                .map(drop),
            Err(err) => this.fatal_error(py, err, "Fatal read error on datagram transport"),
        }
    }

    /// Sends the queued datagrams until the socket would block.
    pub(crate) fn datagram_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        loop {
            let next = this.with(py, |s| {
                let datagram = s.datagram_mut()?;
                let sock = datagram.sock.as_ref()?.clone_ref(py);
                let (data, addr) = datagram.queue.pop_front()?;
                let connected = datagram.connected;
                s.buffered -= queued_size(py, data.as_bytes(py).len());
                Some((sock, connected, data, addr))
            })?;
            let Some((sock, connected, data, addr)) = next else {
                break;
            };
            match send_datagram(sock.bind(py), connected, data.bind(py), addr.as_ref()) {
                Ok(()) => {}
                Err(err) if would_block(py, &err) => {
                    // Put it back in front and try again on the next writable event.
                    this.with(py, |s| {
                        s.buffered += queued_size(py, data.as_bytes(py).len());
                        if let Some(datagram) = s.datagram_mut() {
                            datagram.queue.push_front((data, addr));
                        }
                    })?;
                    return Ok(());
                }
                Err(err) if err.is_instance_of::<PyOSError>(py) => {
                    return this
                        .call_protocol(py, intern!(py, "error_received"), (err.into_value(py),))
                        .map(drop);
                }
                Err(err) => {
                    return this.fatal_error(py, err, "Fatal write error on datagram transport");
                }
            }
        }
        Self::after_flush(slf)
    }

    /// `DatagramTransport.sendto(data, addr=None)`.
    pub(crate) fn datagram_sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let data = if let Ok(bytes) = data.cast::<PyBytes>() {
            bytes.clone()
        } else if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            // Queued data must not change under us: keep an immutable copy.
            py.get_type::<PyBytes>()
                .call1((data,))?
                .cast_into::<PyBytes>()?
        } else {
            let name = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{name}'"
            )));
        };
        // 3.13 sends a zero-length datagram; earlier versions send nothing.
        if data.as_bytes().is_empty() && version::python(py) < (3, 13) {
            return Ok(());
        }
        let fixed = this.with(py, |s| {
            s.datagram()
                .and_then(|d| d.address.as_ref().map(|a| a.clone_ref(py)))
        })?;
        let addr = match (fixed, addr) {
            (Some(fixed), addr) => {
                if let Some(addr) = addr
                    && !addr.is_none()
                    && !addr.eq(fixed.bind(py))?
                {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        fixed.bind(py).str()?
                    )));
                }
                Some(fixed)
            }
            (None, addr) => addr.filter(|a| !a.is_none()).map(Bound::unbind),
        };
        let plan = this.with(py, |s| {
            let has_pending = s.has_pending();
            let conn_lost = s.conn_lost;
            let datagram = s.datagram()?;
            let sock = datagram.sock.as_ref()?.clone_ref(py);
            let (fixed_peer, connected) = (datagram.address.is_some(), datagram.connected);
            if conn_lost != 0 && fixed_peer {
                s.conn_lost += 1;
                return Some(SendPlan::Dropped {
                    warn: s.conn_lost > CONNLOST_WRITES_BEFORE_WARNING,
                });
            }
            Some(if has_pending {
                SendPlan::Queue
            } else {
                SendPlan::Now { sock, connected }
            })
        })?;
        match plan {
            None => return Ok(()),
            Some(SendPlan::Dropped { warn }) => {
                if warn {
                    asyncio_logger(py)?
                        .call_method1("warning", ("socket.send() raised exception.",))?;
                }
                return Ok(());
            }
            Some(SendPlan::Queue) => {}
            Some(SendPlan::Now { sock, connected }) => {
                match send_datagram(sock.bind(py), connected, &data, addr.as_ref()) {
                    Ok(()) => return Ok(()),
                    Err(err) if would_block(py, &err) => {
                        this.set_writing(py, &slf.clone().unbind(), true)?;
                    }
                    Err(err) if err.is_instance_of::<PyOSError>(py) => {
                        return this
                            .call_protocol(py, intern!(py, "error_received"), (err.into_value(py),))
                            .map(drop);
                    }
                    Err(err) => {
                        return this.fatal_error(
                            py,
                            err,
                            "Fatal write error on datagram transport",
                        );
                    }
                }
            }
        }
        let len = queued_size(py, data.as_bytes().len());
        this.with(py, |s| {
            if let Some(datagram) = s.datagram_mut() {
                datagram.queue.push_back((data.unbind(), addr));
                s.buffered += len;
            }
        })?;
        this.maybe_pause_protocol(py)
    }
}

/// What a queued datagram adds to the write buffer size: from 3.13 on, asyncio counts each
/// datagram's header (8 bytes) too, so that flow control sees a queue of empty datagrams.
fn queued_size(py: Python<'_>, len: usize) -> usize {
    if version::python(py) >= (3, 13) {
        len + DATAGRAM_HEADER_SIZE
    } else {
        len
    }
}

fn send_datagram(
    sock: &Bound<'_, PyAny>,
    connected: bool,
    data: &Bound<'_, PyBytes>,
    addr: Option<&Py<PyAny>>,
) -> PyResult<()> {
    let py = sock.py();
    if connected {
        sock.call_method1(intern!(py, "send"), (data,))
    } else {
        // Without a destination this raises TypeError, which is fatal, as on asyncio.
        sock.call_method1(intern!(py, "sendto"), (data, addr))
    }
    .map(drop)
}
