//! The loop's socket-wait methods (`_sock_recv_wait`, `_sock_recv_into_wait`,
//! `_sock_sendall_wait`, `_sock_unwatch`), which `oxloop/sock_ops.py` calls once a first attempt
//! would block: they register a `SockWait` (`sock_ops.rs`) as the fd's reader or writer in the
//! io table. Apart from the loop core (`event_loop.rs`) so that file stays about running
//! callbacks; a module of its own because `sock_ops.rs` is below the io table, which the core
//! is above.

use std::os::fd::RawFd;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::event_loop::LoopCore;
use crate::io_table::{IoTarget, Side};
use crate::sock_ops::SockWait;

impl LoopCore {
    /// Registers a socket wait (`_sock_recv_wait`, `_sock_sendall_wait`).
    fn start_sock_wait(&self, py: Python<'_>, wait: SockWait, side: Side) -> PyResult<()> {
        self.check_closed()?;
        let fd = wait.fd();
        self.io()
            .watch(py, fd, side, IoTarget::Sock(Arc::new(wait)), None)
    }
}

#[pymethods]
impl LoopCore {
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
        self.start_sock_wait(py, SockWait::recv(sock, fd, future, n), Side::Read)
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
        self.start_sock_wait(
            py,
            SockWait::recv_into(sock, fd, future, buffer),
            Side::Read,
        )
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
        self.start_sock_wait(py, SockWait::send_all(sock, fd, future, rest), Side::Write)
    }

    /// Withdraws the socket wait of `future` from `fd` if it is still registered there (the
    /// operation was cancelled); a newer registration of the fd number is left alone.
    fn _sock_unwatch(&self, py: Python<'_>, fd: RawFd, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.is_closed() {
            return Ok(());
        }
        for side in [Side::Read, Side::Write] {
            if self
                .io()
                .unwatch_if(py, fd, side, |t| t.is_wait_for(future))?
            {
                break;
            }
        }
        Ok(())
    }
}
