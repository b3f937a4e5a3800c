//! Non-blocking socket calls for the loop's `sock_*` methods that report "would block" as a
//! value instead of raising `BlockingIOError`.
//!
//! Rust because a socket-level server pays this once per message: raising and catching the
//! exception (with its formatted strerror message) costs several times the system call. The
//! calls otherwise behave like the `socket` module's: EINTR is retried, other errors become the
//! matching `OSError` subclass.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::buffer::BufferView;
use crate::errors::os_error;
use crate::transport::READ_SIZE;

thread_local! {
    /// Where `recv_nowait` reads before copying exactly what arrived into `bytes`.
    static RECV_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn borrow_fd(fd: RawFd) -> PyResult<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    // SAFETY: the fd is only used for the one system call below, while the caller's socket
    // object keeps it open; a closed number makes the call fail with EBADF (an OSError).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// One `recv` into `buf`, retried on EINTR: the count, or None if it would block.
pub(crate) fn recv_retrying(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// `sock.recv(n)` on a non-blocking socket's fd: the bytes, or None if nothing is there yet.
#[pyfunction]
pub fn recv_nowait(py: Python<'_>, fd: RawFd, n: isize) -> PyResult<Option<Py<PyBytes>>> {
    let fd = borrow_fd(fd)?;
    let n = usize::try_from(n).map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
    recv_bytes(py, fd, n)
}

/// One `recv` of up to `n` bytes into a new `bytes`; None if the socket has nothing yet.
pub(crate) fn recv_bytes(
    py: Python<'_>,
    fd: BorrowedFd<'_>,
    n: usize,
) -> PyResult<Option<Py<PyBytes>>> {
    if n > READ_SIZE {
        let mut buf = vec![0u8; n];
        return match recv_retrying(fd, &mut buf).map_err(|err| os_error(py, err))? {
            Some(got) => Ok(Some(PyBytes::new(py, &buf[..got]).unbind())),
            None => Ok(None),
        };
    }
    RECV_BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        match recv_retrying(fd, &mut buf[..n]).map_err(|err| os_error(py, err))? {
            Some(got) => Ok(Some(PyBytes::new(py, &buf[..got]).unbind())),
            None => Ok(None),
        }
    })
}

/// `sock.recv_into(buf)` on a non-blocking socket's fd: the byte count, or None.
#[pyfunction]
pub fn recv_into_nowait(fd: RawFd, buffer: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let fd = borrow_fd(fd)?;
    let mut view = BufferView::writable(buffer)?;
    recv_retrying(fd, view.as_mut_slice()).map_err(|err| os_error(buffer.py(), err))
}

/// `sock.send(data)` on a non-blocking socket's fd: bytes sent, 0 if the socket is full.
#[pyfunction]
pub fn send_nowait(fd: RawFd, data: &Bound<'_, PyAny>) -> PyResult<usize> {
    let fd = borrow_fd(fd)?;
    let view = BufferView::readable(data)?;
    send_retrying(fd, view.as_slice()).map_err(|err| os_error(data.py(), err))
}

/// One `send` (no SIGPIPE) retried on EINTR: bytes sent, 0 if the socket buffer is full.
pub(crate) fn send_retrying(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::send(fd, data, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(err) => return Err(err),
        }
    }
}
