//! The loop's socket system calls, with one contract: EINTR is retried, "would block" is a
//! value (`None` or 0), not an error, and every other failure is the `Errno` for `os_error`.
//! Transports and the `sock_*` operations both go through here, and both read into the one
//! reusable read buffer below.
//!
//! Rust because these run per message: raising and catching `BlockingIOError` (with its
//! formatted strerror) costs several times the system call itself.

use std::io::IoSlice;
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, Shutdown};

use crate::errors::os_error;
use crate::gil_cell::GilCell;

/// asyncio's `_SelectorTransport.max_size`: the most one read returns, and the size of the
/// read buffer.
pub const READ_SIZE: usize = 256 * 1024;

/// Where reads land before exactly what arrived is copied into a `bytes`. One per process, not
/// per loop or per thread: every read holds the GIL while it uses it, so one is never shared.
static READ_BUFFER: GilCell<Vec<u8>> = GilCell::new(Vec::new());

/// `fd` as a borrowed fd for one system call: a ValueError for a negative number, as the
/// `socket` module raises for a closed socket's -1.
pub fn borrow_fd(fd: RawFd) -> PyResult<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    // SAFETY: the fd is only used for system calls made while the caller's socket object
    // keeps it open; a closed number makes the call fail with EBADF (an OSError).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Whether `fd` is an open file descriptor of this process (`fcntl(fd, F_GETFD)`), for
/// callers that are about to size a table by the number.
pub fn is_open(fd: RawFd) -> Result<(), Errno> {
    if fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: F_GETFD only reads the descriptor flags of the number; a number that is not
    // open fails with EBADF and nothing else happens.
    let rc = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if rc < 0 {
        Err(Errno::from_raw_os_error(errno()))
    } else {
        Ok(())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EBADF)
}

/// One `recv` into `buf`: the count (0 at end of stream), or None if it would block.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// One `recv` of up to `n` bytes into a new `bytes` (through the read buffer unless `n` is
/// larger): None if it would block.
pub fn recv_bytes(py: Python<'_>, fd: BorrowedFd<'_>, n: usize) -> PyResult<Option<Py<PyBytes>>> {
    let received = if n > READ_SIZE {
        let mut buf = vec![0u8; n];
        recv(fd, &mut buf).map(|got| got.map(|got| PyBytes::new(py, &buf[..got]).unbind()))
    } else {
        READ_BUFFER.with(py, |buf| {
            if buf.len() < READ_SIZE {
                buf.resize(READ_SIZE, 0);
            }
            // A new `bytes` runs no Python code, so making it under the borrow is allowed.
            recv(fd, &mut buf[..n]).map(|got| got.map(|got| PyBytes::new(py, &buf[..got]).unbind()))
        })?
    };
    received.map_err(|err| os_error(py, err))
}

/// One `send` (no SIGPIPE): bytes sent, 0 if the socket buffer is full.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize, Errno> {
    loop {
        match rustix::net::send(fd, data, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(err) => return Err(err),
        }
    }
}

/// One vectored `sendmsg` (no SIGPIPE): bytes sent, 0 if the socket buffer is full.
pub fn send_vectored(fd: BorrowedFd<'_>, slices: &[IoSlice<'_>]) -> Result<usize, Errno> {
    loop {
        let sent = rustix::net::sendmsg(
            fd,
            slices,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        );
        match sent {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(err) => return Err(err),
        }
    }
}

/// `shutdown(SHUT_WR)`, as an OSError on failure.
pub fn shutdown_write(py: Python<'_>, fd: BorrowedFd<'_>) -> PyResult<()> {
    rustix::net::shutdown(fd, Shutdown::Write).map_err(|err| os_error(py, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::UnixStream;

    #[test]
    fn would_block_is_a_value() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv(a.as_fd(), &mut buf), Ok(None));
        assert_eq!(send(b.as_fd(), b"hi"), Ok(2));
        assert_eq!(recv(a.as_fd(), &mut buf), Ok(Some(2)));
        drop(b);
        assert_eq!(recv(a.as_fd(), &mut buf), Ok(Some(0)));
    }

    #[test]
    fn only_open_fds_are_open() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(is_open(a.as_raw_fd()), Ok(()));
        assert_eq!(is_open(i32::MAX), Err(Errno::BADF));
        assert_eq!(is_open(-1), Err(Errno::BADF));
    }
}
