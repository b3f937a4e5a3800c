//! The Rust half of the loop's `sock_recv`, `sock_recv_into` and `sock_sendall`
//! (`oxloop/sock_ops.py` holds the rest): the first attempt, which answers "would block" with
//! a value instead of raising `BlockingIOError`, and the wait the core completes itself once
//! that attempt would block: when the fd is ready, the loop does the `recv` or the `send` and
//! sets the result of the operation's future (`asyncio.Future`), with no Python callback and no
//! handle in between.
//!
//! Rust because a socket-level server pays this once per message: the exception costs several
//! times the system call, and the generic wait a future subclass, a handle with its context,
//! and three Python frames per event.
//!
//! Invariants, which the io table (`io_table.rs`) keeps:
//! - a wait is one fd table target: it runs only while it is still the target registered for
//!   its fd and side (`Arc` identity), and is unregistered before its future is completed, so
//!   an operation that replaced it on the same fd number is never touched;
//! - a wait whose future is already done (cancelled) only unregisters itself: it never reads,
//!   so a cancelled `sock_recv` consumes no data;
//! - before each system call the socket object must still hold the fd (`fileno()`): a socket
//!   closed while its operation waits fails that operation with EBADF, as the socket method
//!   would, instead of reading or writing whatever file reuses the number.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use rustix::io::Errno;

use pyo3::exceptions::PyValueError;
use pyo3::types::PyBytes;

use crate::buffer::BufferView;
use crate::errors::os_error;
use crate::socket_io::{borrow_fd, recv, recv_bytes, send};

/// `sock.recv(n)` on a non-blocking socket's fd: the bytes, or None if nothing is there yet.
#[pyfunction]
pub fn recv_nowait(py: Python<'_>, fd: RawFd, n: isize) -> PyResult<Option<Py<PyBytes>>> {
    let fd = borrow_fd(fd)?;
    let n = usize::try_from(n).map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
    recv_bytes(py, fd, n)
}

/// `sock.recv_into(buf)` on a non-blocking socket's fd: the byte count, or None.
#[pyfunction]
pub fn recv_into_nowait(fd: RawFd, buffer: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let fd = borrow_fd(fd)?;
    let mut view = BufferView::writable(buffer)?;
    recv(fd, view.as_mut_slice()).map_err(|err| os_error(buffer.py(), err))
}

/// `sock.send(data)` on a non-blocking socket's fd: bytes sent, 0 if the socket is full.
#[pyfunction]
pub fn send_nowait(fd: RawFd, data: &Bound<'_, PyAny>) -> PyResult<usize> {
    let fd = borrow_fd(fd)?;
    let view = BufferView::readable(data)?;
    send(fd, view.as_slice()).map_err(|err| os_error(data.py(), err))
}

enum SockOp {
    /// `sock_recv(sock, n)`: one `recv` of up to `n` bytes.
    Recv { n: usize },
    /// `sock_recv_into(sock, buffer)`: one `recv` into the writable `buffer`.
    RecvInto { buffer: Py<PyAny> },
    /// The rest of `sock_sendall(sock, data)`: `data` is a byte view, `sent` how much of it
    /// earlier writable events sent.
    SendAll { data: Py<PyAny>, sent: AtomicUsize },
}

/// One waiting `sock_recv`, `sock_recv_into` or `sock_sendall`.
pub struct SockWait {
    sock: Py<PyAny>,
    fd: RawFd,
    future: Py<PyAny>,
    op: SockOp,
}

impl SockWait {
    pub fn recv(sock: Py<PyAny>, fd: RawFd, future: Py<PyAny>, n: usize) -> Self {
        Self {
            sock,
            fd,
            future,
            op: SockOp::Recv { n },
        }
    }

    pub fn recv_into(sock: Py<PyAny>, fd: RawFd, future: Py<PyAny>, buffer: Py<PyAny>) -> Self {
        Self {
            sock,
            fd,
            future,
            op: SockOp::RecvInto { buffer },
        }
    }

    pub fn send_all(sock: Py<PyAny>, fd: RawFd, future: Py<PyAny>, data: Py<PyAny>) -> Self {
        Self {
            sock,
            fd,
            future,
            op: SockOp::SendAll {
                data,
                sent: AtomicUsize::new(0),
            },
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// What the cycle collector sees through the wait (the loop's `__traverse__`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sock)?;
        visit.call(&self.future)?;
        match &self.op {
            SockOp::Recv { .. } => Ok(()),
            SockOp::RecvInto { buffer } => visit.call(buffer),
            SockOp::SendAll { data, .. } => visit.call(data),
        }
    }

    pub fn future(&self) -> &Py<PyAny> {
        &self.future
    }

    /// True once the future is done: the operation was cancelled (only the core completes it
    /// otherwise, after unregistering the wait).
    pub fn future_done(&self, py: Python<'_>) -> PyResult<bool> {
        self.future
            .bind(py)
            .call_method0(intern!(py, "done"))?
            .is_truthy()
    }

    /// Tries the operation once the fd is ready: None while it would still block, else its
    /// outcome (the value for the future, or the error).
    pub fn attempt(&self, py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        match self.try_op(py) {
            Ok(None) => None,
            Ok(Some(value)) => Some(Ok(value)),
            Err(err) => Some(Err(err)),
        }
    }

    fn try_op(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let fileno: RawFd = self
            .sock
            .bind(py)
            .call_method0(intern!(py, "fileno"))?
            .extract()?;
        if fileno != self.fd {
            return Err(os_error(py, Errno::BADF));
        }
        let fd = borrow_fd(self.fd)?;
        match &self.op {
            SockOp::Recv { n } => Ok(recv_bytes(py, fd, *n)?.map(Py::into_any)),
            SockOp::RecvInto { buffer } => {
                let mut view = BufferView::writable(buffer.bind(py))?;
                match recv(fd, view.as_mut_slice()).map_err(|err| os_error(py, err))? {
                    Some(n) => Ok(Some(n.into_pyobject(py)?.into_any().unbind())),
                    None => Ok(None),
                }
            }
            SockOp::SendAll { data, sent } => {
                let view = BufferView::readable(data.bind(py))?;
                let rest = view
                    .as_slice()
                    .get(sent.load(Ordering::Relaxed)..)
                    .unwrap_or(&[]);
                let now = send(fd, rest).map_err(|err| os_error(py, err))?;
                if now < rest.len() {
                    sent.fetch_add(now, Ordering::Relaxed);
                    return Ok(None);
                }
                Ok(Some(py.None()))
            }
        }
    }

    /// Completes the future with `outcome`. The caller found the future pending just before
    /// the attempt, so this fails only if the socket's own methods completed it meanwhile; such
    /// a failure has no caller to go to and is reported through `sys.unraisablehook`.
    pub fn complete(&self, py: Python<'_>, outcome: PyResult<Py<PyAny>>) {
        let future = self.future.bind(py);
        let completed = match outcome {
            Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
            Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),)),
        };
        if let Err(err) = completed {
            err.write_unraisable(py, Some(future));
        }
    }
}
