//! The stream half of socket transports (TCP and Unix stream sockets): where bytes go from a
//! readable socket to the protocol's `data_received`/`buffer_updated`, and from `write()` to
//! the socket. The state they share with datagram transports lives in `transport/mod.rs`.
//!
//! Rust because this runs per read and per write, with asyncio's `_SelectorSocketTransport`
//! semantics:
//! - Reads: one `recv` per readiness event into the reusable read buffer, then one
//!   `bytes` of exactly the size read goes to `data_received`. A `BufferedProtocol` gets
//!   `recv_into` straight into the buffer its `get_buffer` returned.
//! - Writes: with nothing buffered, `write()` sends at once and keeps only what the kernel did
//!   not take (a `bytes` object is kept by reference, not copied). Buffered data goes out in one
//!   vectored `sendmsg` when the socket turns writable.

use std::collections::VecDeque;
use std::io::IoSlice;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use super::{CONNLOST_WRITES_BEFORE_WARNING, Kind, TransportCore, asyncio_logger};
use crate::buffer::BufferView;
use crate::errors::os_error;
use crate::socket_io::{READ_SIZE, recv, recv_bytes, send, send_vectored};
use crate::version;

/// Buffers passed to one `sendmsg`; Linux's IOV_MAX is 1024.
const MAX_IOVECS: usize = 1024;

/// Data waiting to be written.
pub(crate) enum Chunk {
    /// An immutable `bytes` object, written from an offset: no copy.
    Shared(Py<PyBytes>, usize),
    /// A copy of mutable data (`bytearray`), written from an offset.
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

/// What `write()` was given: a `bytes` object, kept by reference if it has to wait, or a view
/// of mutable memory (bytearray, memoryview), copied only if it has to wait.
pub(crate) enum WriteData {
    Bytes(Py<PyBytes>),
    View(BufferView),
}

impl WriteData {
    fn as_slice<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        match self {
            WriteData::Bytes(bytes) => bytes.as_bytes(py),
            WriteData::View(view) => view.as_slice(),
        }
    }

    /// What is left from `offset` on, as a chunk that can wait in the queue.
    fn into_chunk(self, offset: usize) -> Chunk {
        match self {
            WriteData::Bytes(bytes) => Chunk::Shared(bytes, offset),
            WriteData::View(view) => Chunk::Owned(view.as_slice()[offset..].to_vec(), 0),
        }
    }
}

/// What happens after a write call changed the state: decided under the borrow, done after.
/// A finished view comes back out to be released after the borrow.
enum WriteOutcome {
    Done(WriteData),
    Failed(PyErr, WriteData),
    LoopClosed(WriteData),
    Buffered { register: bool },
}

impl TransportCore {
    /// 3.12+ asyncio checks `writelines()` before it looks at the data, naming writelines() in
    /// the error; 3.11 joined the data and let write() complain.
    pub(crate) fn check_writelines(&self, py: Python<'_>) -> PyResult<()> {
        if crate::version::python(py) < (3, 12) {
            return Ok(());
        }
        self.with(py, |s| {
            if s.eof {
                Err(PyRuntimeError::new_err(
                    "Cannot call writelines() after write_eof()",
                ))
            } else if s.empty_waiter.is_some() {
                Err(PyRuntimeError::new_err(
                    "unable to writelines; sendfile is in progress",
                ))
            } else {
                Ok(())
            }
        })?
    }

    pub(crate) fn write_bytes(
        &self,
        py: Python<'_>,
        slf: &Py<Self>,
        data: WriteData,
    ) -> PyResult<()> {
        let len = data.as_slice(py).len();
        let lost = self.with(py, |s| -> PyResult<Option<u32>> {
            if matches!(s.kind, Kind::Datagram(_)) {
                return Err(PyRuntimeError::new_err(
                    "write() is for stream transports; use sendto()",
                ));
            }
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
            let Kind::Stream(chunks) = &mut s.kind else {
                return WriteOutcome::Done(data); // checked above: a stream transport
            };
            let register = chunks.is_empty();
            let mut sent = 0;
            if register {
                match send(self.fd(), data.as_slice(py)) {
                    Ok(n) if n == len => return WriteOutcome::Done(data),
                    Ok(n) => sent = n,
                    Err(err) => {
                        let err = os_error(py, err);
                        return WriteOutcome::Failed(err, data);
                    }
                }
                // The rest needs a writability watch, which a closed loop cannot give: asyncio's
                // add_writer raises there, and the rest is not buffered.
                if s.io.as_ref().is_some_and(|io| io.is_closed()) {
                    return WriteOutcome::LoopClosed(data);
                }
            }
            chunks.push_back(data.into_chunk(sent));
            s.buffered += len - sent;
            WriteOutcome::Buffered { register }
        })?;
        match outcome {
            WriteOutcome::Done(data) => {
                drop(data);
                Ok(())
            }
            WriteOutcome::Failed(err, data) => {
                drop(data);
                self.fatal_error(py, err, "Fatal write error on socket transport")
            }
            WriteOutcome::LoopClosed(data) => {
                drop(data);
                Err(PyRuntimeError::new_err("Event loop is closed"))
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
    pub(crate) fn stream_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
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
        let data = match recv_bytes(py, self.fd(), READ_SIZE) {
            Ok(None) => return Ok(()),
            Ok(Some(data)) if data.as_bytes(py).is_empty() => return self.on_eof(slf),
            Ok(Some(data)) => data,
            Err(err) => return self.fatal_error(py, err, "Fatal read error on socket transport"),
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
        let received = match BufferView::writable(&buffer) {
            Ok(mut view) => recv(self.fd(), view.as_mut_slice()).map_err(|err| os_error(py, err)),
            Err(err) => Err(err),
        };
        let nbytes = match received {
            Ok(None) => return Ok(()),
            Ok(Some(0)) => return self.on_eof(slf),
            Ok(Some(n)) => n,
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
    pub(crate) fn stream_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let unbound = slf.clone().unbind();
        let sent = this.with(py, |s| {
            let Kind::Stream(chunks) = &mut s.kind else {
                return None;
            };
            if !s.interest.write || s.conn_lost != 0 || chunks.is_empty() {
                return None;
            }
            let result = send_chunks(this.fd(), py, chunks);
            if let Ok(n) = result {
                consume(py, chunks, n);
                s.buffered -= n;
            }
            Some(result)
        })?;
        match sent {
            // Nothing sent: the socket would block after all.
            None | Some(Ok(0)) => Ok(()),
            Some(Err(err)) => {
                let cleared = this.with(py, |s| s.take_pending())?;
                drop(cleared);
                this.set_writing(py, &unbound, false)?;
                let err = os_error(py, err);
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
            Some(Ok(_)) => Self::after_flush(slf),
        }
    }
}

/// One vectored send of the queued chunks (at most `MAX_IOVECS` of them).
/// The items of `writelines(list_of_data)` joined into one `bytes`. An item that is not
/// bytes-like fails as on the running asyncio: 3.11 joins them too ("sequence item 1: expected
/// a bytes-like object, str found"); 3.12+ takes a `memoryview` of each, whose error names the
/// type ("memoryview: a bytes-like object is required, not 'str'"), so that error is raised.
pub(crate) fn join_for_writelines<'py>(
    list_of_data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = list_of_data.py();
    let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,));
    match joined {
        Err(err) if err.is_instance_of::<PyTypeError>(py) && version::python(py) >= (3, 12) => {
            // Only on failure: a list or tuple is walked again (an iterator join consumed
            // keeps join's error).
            for item in list_of_data.try_iter()? {
                py.get_type::<PyMemoryView>().call1((item?,))?;
            }
            Err(err)
        }
        other => other,
    }
}

fn send_chunks(
    fd: std::os::fd::BorrowedFd<'_>,
    py: Python<'_>,
    chunks: &VecDeque<Chunk>,
) -> Result<usize, rustix::io::Errno> {
    let slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .take(MAX_IOVECS)
        .map(|chunk| IoSlice::new(chunk.remaining(py)))
        .collect();
    send_vectored(fd, &slices)
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
