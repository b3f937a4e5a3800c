//! The TLS layer's per-record work: `TlsLayer`, the base class of oxloop's TLS protocol
//! (`oxloop.tls.TLSProtocol`), which sits where asyncio's `sslproto.SSLProtocol` sits: it is
//! the protocol of the socket transport under the connection and drives the user's
//! `ssl.SSLObject` and its two `ssl.MemoryBIO`s.
//!
//! Split by how often the code runs. Per read and per write (ciphertext in, the `SSLObject`
//! read loop, plaintext to the application's `data_received`/`buffer_updated`, `write()`
//! encrypting and handing the records to the socket, both directions' flow control) is here,
//! in Rust, calling the `ssl` module's C methods without a Python frame; so are the handshake
//! and shutdown steps that call the TLS object (`tls/handshake.rs`). The rest of what runs once
//! per connection (the state transitions, timeouts, abort, `eof_received`, connection_lost, the
//! waiter, extra info) is asyncio's own `SSLProtocol` state machine, which the Python subclass
//! inherits unchanged: its semantics are stock asyncio's on every version by construction, and
//! its differences between versions (3.13's `_abort(exc)`) come with it. The buffers the
//! connections of a thread share are in `tls/buffers.rs`.
//!
//! Records go to the socket once per iteration: what the application writes while the loop
//! runs its callbacks stays in the outgoing BIO until the iteration's end, when one read of the
//! BIO and one socket write send all of it (`IoTable::defer_to_iteration_end`), as uvloop sends
//! its streams' writes once per iteration. A response written in two `write()` calls (an HTTP
//! server's headers and body) then costs one system call, not two. Outside an iteration, past
//! `FLUSH_AT` bytes, and for every path asyncio's own code drives (handshake, shutdown,
//! `resume_writing`), the records go at once; `abort()` and fatal errors send what waits first.
//!
//! The state both halves share is stored here, in fields exposed under `SSLProtocol`'s own
//! attribute names (`_state`, `_sslobj`, `_write_buffer_size`, ...): asyncio's Python code reads
//! and assigns them as usual, and the Rust paths read them without a dictionary lookup. The
//! methods defined here override `SSLProtocol`'s of the same name and do what those do, step
//! for step. A field is borrowed only to copy it out: the Python side assigns them while a
//! Rust method runs (a `data_received` that closes the transport starts the shutdown).

mod buffers;
mod handshake;

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PySlice, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::{TransportCore, TransportIo};
use crate::buffer::BufferView;
use buffers::{MAX_READ, read_scratch, receive_buffer};

/// Records waiting for the iteration's end go at once when they reach this size (a socket
/// transport's default high-water mark): bulk writes stream instead of piling up.
const FLUSH_AT: usize = 64 * 1024;

/// The members of asyncio's `SSLProtocolState` the Rust paths test for, looked up once.
struct States {
    do_handshake: Py<PyAny>,
    wrapped: Py<PyAny>,
    flushing: Py<PyAny>,
    shutdown: Py<PyAny>,
}

impl States {
    fn get(py: Python<'_>) -> PyResult<&States> {
        static STATES: PyOnceLock<States> = PyOnceLock::new();
        STATES.get_or_try_init(py, || {
            let class = py.import("asyncio.sslproto")?.getattr("SSLProtocolState")?;
            let member = |name: &str| class.getattr(name).map(Bound::unbind);
            Ok(States {
                do_handshake: member("DO_HANDSHAKE")?,
                wrapped: member("WRAPPED")?,
                flushing: member("FLUSHING")?,
                shutdown: member("SHUTDOWN")?,
            })
        })
    }
}

/// True for asyncio's `SSLAgainErrors` (`SSLWantReadError`, `SSLSyscallError`): the record
/// layer needs more input, which is not an error.
fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    static AGAIN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let again = AGAIN.import(py, "asyncio.sslproto", "SSLAgainErrors")?;
    err.value(py).is_instance(again)
}

/// True if a read could decrypt something: records wait in the incoming BIO, or decrypted
/// bytes in the TLS object. Without either, `read` can only raise `SSLWantReadError`: OpenSSL
/// takes one record at a time from the BIO, so none is half-taken after a read returned data.
fn more_to_decrypt(cipher: &Bound<'_, PyAny>, incoming: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = cipher.py();
    let waiting: usize = incoming.getattr(intern!(py, "pending"))?.extract()?;
    let decrypted = || {
        cipher
            .call_method0(intern!(py, "pending"))?
            .extract::<usize>()
    };
    Ok(waiting > 0 || decrypted()? > 0)
}

fn ssl_object_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CLASS.import(py, "ssl", "SSLObject")
}

#[pyclass(subclass, module = "oxloop._oxloop")]
pub struct TlsLayer {
    #[pyo3(get, set, name = "_state")]
    state: Py<PyAny>,
    /// The `ssl.SSLObject`, and what its `read`/`write` are called on: its C object
    /// (`_ssl._SSLSocket`, whose methods the `SSLObject` ones only forward to) unless the
    /// context's `sslobject_class` is a subclass that may override them.
    sslobj: Py<PyAny>,
    cipher: Py<PyAny>,
    #[pyo3(get, set, name = "_incoming")]
    incoming: Py<PyAny>,
    #[pyo3(get, set, name = "_outgoing")]
    outgoing: Py<PyAny>,
    transport: Py<PyAny>,
    /// The io table of the socket transport's loop, if it is one of ours (not a mock, not a
    /// stock asyncio transport): where records wait for the end of the iteration.
    io: Option<TransportIo>,
    /// True while this layer waits in `io` for the end of the iteration.
    flush_queued: bool,
    #[pyo3(get, set, name = "_app_protocol")]
    app_protocol: Py<PyAny>,
    #[pyo3(get, set, name = "_app_protocol_is_buffer")]
    app_protocol_is_buffer: bool,
    #[pyo3(get, set, name = "_write_backlog")]
    write_backlog: Py<PyAny>,
    #[pyo3(get, set, name = "_write_buffer_size")]
    write_buffer_size: isize,
    #[pyo3(get, set, name = "_app_reading_paused")]
    app_reading_paused: bool,
    #[pyo3(get, set, name = "_ssl_reading_paused")]
    ssl_reading_paused: bool,
    #[pyo3(get, set, name = "_ssl_writing_paused")]
    ssl_writing_paused: bool,
    #[pyo3(get, set, name = "_app_writing_paused")]
    app_writing_paused: bool,
    #[pyo3(get, set, name = "_incoming_high_water")]
    incoming_high_water: isize,
    #[pyo3(get, set, name = "_incoming_low_water")]
    incoming_low_water: isize,
    #[pyo3(get, set, name = "_outgoing_high_water")]
    outgoing_high_water: isize,
    #[pyo3(get, set, name = "_outgoing_low_water")]
    outgoing_low_water: isize,
}

/// What a read or write path needs, copied out of the fields (see the module doc).
struct Snapshot {
    state: Py<PyAny>,
    cipher: Py<PyAny>,
    incoming: Py<PyAny>,
    app_protocol: Py<PyAny>,
    write_backlog: Py<PyAny>,
}

impl TlsLayer {
    fn snapshot(slf: &Bound<'_, Self>) -> PyResult<Snapshot> {
        let py = slf.py();
        let this = slf.try_borrow()?;
        Ok(Snapshot {
            state: this.state.clone_ref(py),
            cipher: this.cipher.clone_ref(py),
            incoming: this.incoming.clone_ref(py),
            app_protocol: this.app_protocol.clone_ref(py),
            write_backlog: this.write_backlog.clone_ref(py),
        })
    }

    /// `SSLProtocol._do_read__copied`: every record decrypted now, to `data_received` at once.
    /// Decrypted one record after the other into the shared scratch buffer, then copied out
    /// in one piece at its size (asyncio's `read(max_size)` allocates `max_size` bytes per
    /// record, and joins the records in one more copy), and no last read once nothing is left
    /// to decrypt (asyncio's ends on an `SSLWantReadError`, which costs more than the read: the
    /// exception object and its formatted message).
    fn read_copied(slf: &Bound<'_, Self>, snap: &Snapshot) -> PyResult<()> {
        let py = slf.py();
        let cipher = snap.cipher.bind(py);
        let incoming = snap.incoming.bind(py);
        let scratch = &read_scratch(py)?;
        let mut chunks: Vec<Bound<'_, PyBytes>> = Vec::new();
        let copy_out = |filled: usize| -> PyResult<Bound<'_, PyBytes>> {
            let data = BufferView::readable(scratch)?;
            Ok(PyBytes::new(
                py,
                data.as_slice().get(..filled).unwrap_or_default(),
            ))
        };
        let mut filled = 0;
        let mut eof = false;
        loop {
            if (filled > 0 || !chunks.is_empty()) && !more_to_decrypt(cipher, incoming)? {
                break;
            }
            if filled == MAX_READ {
                chunks.push(copy_out(filled)?);
                filled = 0;
            }
            let into = if filled == 0 {
                scratch.clone().into_any()
            } else {
                let rest = PySlice::new(py, filled as isize, isize::MAX, 1);
                PyMemoryView::from(scratch.as_any())?.get_item(rest)?
            };
            match cipher.call_method1(intern!(py, "read"), (MAX_READ - filled, into)) {
                Ok(count) => match count.extract::<usize>()? {
                    0 => {
                        eof = true;
                        break;
                    }
                    count => filled += count,
                },
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if filled > 0 {
            chunks.push(copy_out(filled)?);
        }
        let app = snap.app_protocol.bind(py);
        match chunks.len() {
            0 => {}
            1 => {
                app.call_method1(intern!(py, "data_received"), (&chunks[0],))?;
            }
            _ => {
                let joined = PyBytes::new(py, b"")
                    .call_method1(intern!(py, "join"), (PyList::new(py, &chunks)?,))?;
                app.call_method1(intern!(py, "data_received"), (joined,))?;
            }
        }
        if eof {
            Self::on_close_notify(slf)?;
        }
        Ok(())
    }

    /// `SSLProtocol._do_read__buffered`: decrypt straight into the protocol's buffer (without
    /// the last read that could only fail, as in `read_copied`).
    fn read_buffered(slf: &Bound<'_, Self>, snap: &Snapshot) -> PyResult<()> {
        let py = slf.py();
        let cipher = snap.cipher.bind(py);
        let incoming = snap.incoming.bind(py);
        let app = snap.app_protocol.bind(py);
        let pending = incoming.getattr(intern!(py, "pending"))?;
        let buf = app.call_method1(intern!(py, "get_buffer"), (pending,))?;
        let wants = buf.len()?;
        let mut offset = 0usize;
        let mut count = 1usize;
        let read = (|| -> PyResult<()> {
            count = cipher
                .call_method1(intern!(py, "read"), (wants, &buf))?
                .extract()?;
            if count == 0 {
                return Ok(());
            }
            offset = count;
            while offset < wants {
                if !more_to_decrypt(cipher, incoming)? {
                    return Ok(());
                }
                let rest = buf.get_item(PySlice::new(py, offset as isize, isize::MAX, 1))?;
                count = cipher
                    .call_method1(intern!(py, "read"), (wants - offset, rest))?
                    .extract()?;
                if count == 0 {
                    return Ok(());
                }
                offset += count;
            }
            // The buffer is full and more may be decrypted: read again next iteration.
            let event_loop = slf.getattr(intern!(py, "_loop"))?;
            let again = slf.getattr(intern!(py, "_do_read"))?;
            event_loop.call_method1(intern!(py, "call_soon"), (again,))?;
            Ok(())
        })();
        match read {
            Err(err) if !is_again(py, &err)? => return Err(err),
            _ => {}
        }
        if offset > 0 {
            app.call_method1(intern!(py, "buffer_updated"), (offset,))?;
        }
        if count == 0 {
            Self::on_close_notify(slf)?;
        }
        Ok(())
    }

    /// The peer's close_notify arrived: EOF for the application, then our side's shutdown.
    fn on_close_notify(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        slf.call_method0(intern!(py, "_call_eof_received"))?;
        slf.call_method0(intern!(py, "_start_shutdown"))?;
        Ok(())
    }

    /// The body of `_do_read` under its `try`.
    fn read_step(slf: &Bound<'_, Self>) -> PyResult<()> {
        let (paused, buffered) = {
            let this = slf.try_borrow()?;
            (this.app_reading_paused, this.app_protocol_is_buffer)
        };
        if !paused {
            let snap = Self::snapshot(slf)?;
            if buffered {
                Self::read_buffered(slf, &snap)?;
            } else {
                Self::read_copied(slf, &snap)?;
            }
            // What the application wrote meanwhile (an empty backlog only sends the records).
            Self::do_write(slf, true)?;
        }
        Self::_control_ssl_reading(slf)
    }

    /// asyncio's `except Exception as ex: self._fatal_error(ex, message)` around a step;
    /// KeyboardInterrupt and SystemExit go up.
    fn fatal_on_error(slf: &Bound<'_, Self>, result: PyResult<()>) -> PyResult<()> {
        let py = slf.py();
        match result {
            Err(err) if err.is_instance_of::<PyException>(py) => {
                slf.call_method1(
                    intern!(py, "_fatal_error"),
                    (err.into_value(py), "Fatal error on SSL protocol"),
                )?;
                Ok(())
            }
            other => other,
        }
    }

    /// Encrypts `data` at once when nothing waits before it (the common case of `write()`),
    /// as `_write_appdata` + `_do_write` would: what `SSLObject.write` did not take waits in
    /// the backlog.
    fn write_direct(
        slf: &Bound<'_, Self>,
        snap: &Snapshot,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let len = data.len()?;
        let count = match snap
            .cipher
            .bind(py)
            .call_method1(intern!(py, "write"), (data,))
        {
            Ok(count) => count.extract::<usize>()?,
            Err(err) if is_again(py, &err)? => 0,
            Err(err) => return Err(err),
        };
        if count < len {
            let rest = if count == 0 {
                data.clone()
            } else {
                data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?
            };
            snap.write_backlog
                .bind(py)
                .call_method1(intern!(py, "append"), (rest,))?;
            slf.try_borrow_mut()?.write_buffer_size += (len - count) as isize;
        }
        Self::push_outgoing(slf)
    }

    /// Sends the outgoing BIO's records at the iteration's end (see the module doc), or at once
    /// outside one, for a transport not oxloop's, or past `FLUSH_AT`; then flow control.
    fn push_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (queued, io, outgoing) = {
            let this = slf.try_borrow()?;
            (
                this.flush_queued,
                this.io.clone(),
                this.outgoing.clone_ref(py),
            )
        };
        let Some(io) = io else {
            return Self::_process_outgoing(slf);
        };
        let pending: usize = outgoing
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract()?;
        if pending >= FLUSH_AT {
            return Self::_process_outgoing(slf);
        }
        if pending > 0 && !queued {
            if !io.defer_to_iteration_end(py, slf.as_any())? {
                return Self::_process_outgoing(slf);
            }
            slf.try_borrow_mut()?.flush_queued = true;
        }
        Self::_control_app_writing(slf)
    }

    /// `_do_write` with the records sent at once (`defer` false) or at the iteration's end.
    fn do_write(slf: &Bound<'_, Self>, defer: bool) -> PyResult<()> {
        let py = slf.py();
        let snap = Self::snapshot(slf)?;
        let backlog = snap.write_backlog.bind(py);
        let cipher = snap.cipher.bind(py);
        let encrypted = (|| -> PyResult<()> {
            while backlog.is_truthy()? {
                let data = backlog.get_item(0)?;
                let count: usize = cipher
                    .call_method1(intern!(py, "write"), (&data,))?
                    .extract()?;
                let len = data.len()?;
                if count < len {
                    backlog.set_item(
                        0,
                        data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?,
                    )?;
                    slf.try_borrow_mut()?.write_buffer_size -= count as isize;
                } else {
                    backlog.del_item(0)?;
                    slf.try_borrow_mut()?.write_buffer_size -= len as isize;
                }
            }
            Ok(())
        })();
        match encrypted {
            Err(err) if !is_again(py, &err)? => return Err(err),
            _ => {}
        }
        if defer {
            Self::push_outgoing(slf)
        } else {
            Self::_process_outgoing(slf)
        }
    }

    fn report_flow_control_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
            return Err(err);
        }
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", slf.getattr(intern!(py, "_app_transport"))?)?;
        context.set_item("protocol", slf)?;
        slf.getattr(intern!(py, "_loop"))?
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }
}

#[pymethods]
impl TlsLayer {
    /// Every field starts as None / False / 0; `SSLProtocol.__init__` fills them in.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        Self {
            state: py.None(),
            sslobj: py.None(),
            cipher: py.None(),
            incoming: py.None(),
            outgoing: py.None(),
            transport: py.None(),
            io: None,
            flush_queued: false,
            app_protocol: py.None(),
            app_protocol_is_buffer: false,
            write_backlog: py.None(),
            write_buffer_size: 0,
            app_reading_paused: false,
            ssl_reading_paused: false,
            ssl_writing_paused: false,
            app_writing_paused: false,
            incoming_high_water: 0,
            incoming_low_water: 0,
            outgoing_high_water: 0,
            outgoing_low_water: 0,
        }
    }

    #[getter(_transport)]
    fn get_transport(&self, py: Python<'_>) -> Py<PyAny> {
        self.transport.clone_ref(py)
    }

    /// The socket transport (None once lost), and the io table its records may wait in.
    #[setter(_transport)]
    fn set_transport(&mut self, transport: Bound<'_, PyAny>) -> PyResult<()> {
        let py = transport.py();
        self.io = match transport.getattr_opt(intern!(py, "_core"))? {
            Some(core) => match core.cast::<TransportCore>() {
                Ok(core) => core.get().with(py, |s| s.io.clone())?,
                Err(_) => None,
            },
            None => None,
        };
        self.transport = transport.unbind();
        Ok(())
    }

    #[getter(_sslobj)]
    fn get_sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.sslobj.clone_ref(py)
    }

    #[setter(_sslobj)]
    fn set_sslobj(&mut self, sslobj: Bound<'_, PyAny>) -> PyResult<()> {
        let py = sslobj.py();
        let cipher = if sslobj.get_type().is(ssl_object_class(py)?) {
            sslobj.getattr(intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        self.cipher = cipher.unbind();
        self.sslobj = sslobj.unbind();
        Ok(())
    }

    /// The buffer the socket transport receives ciphertext into (always `MAX_READ` long).
    fn get_buffer<'py>(&self, py: Python<'py>, _n: isize) -> PyResult<Bound<'py, PyAny>> {
        receive_buffer(py)
    }

    /// `nbytes` of ciphertext arrived: into the incoming BIO, then on with the current state.
    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let (incoming, state) = {
            let this = slf.try_borrow()?;
            (this.incoming.clone_ref(py), this.state.clone_ref(py))
        };
        let received = receive_buffer(py)?.get_item(PySlice::new(py, 0, nbytes as isize, 1))?;
        incoming
            .bind(py)
            .call_method1(intern!(py, "write"), (received,))?;
        let state = state.bind(py);
        let states = States::get(py)?;
        if state.is(&states.wrapped) {
            return Self::_do_read(slf);
        }
        let next = if state.is(&states.do_handshake) {
            intern!(py, "_do_handshake")
        } else if state.is(&states.flushing) {
            intern!(py, "_do_flush")
        } else if state.is(&states.shutdown) {
            intern!(py, "_do_shutdown")
        } else {
            return Ok(());
        };
        slf.call_method0(next).map(drop)
    }

    /// Decrypts what the incoming BIO holds and hands it to the application.
    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let states = States::get(py)?;
        let state = slf.try_borrow()?.state.clone_ref(py);
        let state = state.bind(py);
        if !state.is(&states.wrapped) && !state.is(&states.flushing) {
            return Ok(());
        }
        let result = Self::read_step(slf);
        Self::fatal_on_error(slf, result)
    }

    /// Encrypts the backlog (as far as the TLS layer takes it), then sends the records.
    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_write(slf, false)
    }

    /// Sends what waits for the end of the iteration, if anything does and the connection is
    /// up: at the iteration's end, or before `abort()` or a fatal error closes the socket (on
    /// asyncio those records would be in the kernel already).
    fn _flush_deferred(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let live = {
            let mut this = slf.try_borrow_mut()?;
            let queued = std::mem::replace(&mut this.flush_queued, false);
            queued && !this.transport.is_none(py)
        };
        if !live {
            return Ok(());
        }
        let result = Self::_process_outgoing(slf);
        Self::fatal_on_error(slf, result)
    }

    /// Queues the application's data and encrypts it if the connection is up.
    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let snap = Self::snapshot(slf)?;
        let states = States::get(py)?;
        let state = snap.state.bind(py);
        let in_handshake = state.is(&states.do_handshake);
        if !state.is(&states.wrapped) && !in_handshake {
            // Closing or closed: asyncio's own code counts the writes and warns (`oxloop.tls`
            // keeps it under this name).
            slf.call_method1(intern!(py, "_stdlib_write_appdata"), (list_of_data,))?;
            return Ok(());
        }
        let backlog = snap.write_backlog.bind(py);
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()? as isize;
            backlog.call_method1(intern!(py, "append"), (data,))?;
            slf.try_borrow_mut()?.write_buffer_size += len;
        }
        if in_handshake {
            return Ok(());
        }
        let result = Self::do_write(slf, true);
        Self::fatal_on_error(slf, result)
    }

    /// The application transport's `write()` (stored on it by `oxloop.tls`).
    fn _app_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            let name = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {name}"
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        let snap = Self::snapshot(slf)?;
        if snap.state.bind(py).is(&States::get(py)?.wrapped)
            && !snap.write_backlog.bind(py).is_truthy()?
        {
            let result = Self::write_direct(slf, &snap, data);
            return Self::fatal_on_error(slf, result);
        }
        Self::_write_appdata(slf, PyTuple::new(py, [data])?.as_any())
    }

    /// Hands the encrypted records to the socket transport, unless it asked us to pause.
    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (paused, outgoing, transport) = {
            let this = slf.try_borrow()?;
            (
                this.ssl_writing_paused,
                this.outgoing.clone_ref(py),
                this.transport.clone_ref(py),
            )
        };
        if !paused {
            let data = outgoing.bind(py).call_method0(intern!(py, "read"))?;
            if data.len()? > 0 {
                transport
                    .bind(py)
                    .call_method1(intern!(py, "write"), (data,))?;
            }
        }
        Self::_control_app_writing(slf)
    }

    fn _get_write_buffer_size(&self, py: Python<'_>) -> PyResult<isize> {
        let pending: isize = self
            .outgoing
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract()?;
        Ok(pending + self.write_buffer_size)
    }

    fn _get_read_buffer_size(&self, py: Python<'_>) -> PyResult<isize> {
        self.incoming
            .bind(py)
            .getattr(intern!(py, "pending"))?
            .extract()
    }

    /// Pauses or resumes the application's writing at the write buffer's marks.
    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = slf.try_borrow()?._get_write_buffer_size(py)?;
        let call = {
            let mut this = slf.try_borrow_mut()?;
            if size >= this.outgoing_high_water && !this.app_writing_paused {
                this.app_writing_paused = true;
                Some((
                    intern!(py, "pause_writing"),
                    "protocol.pause_writing() failed",
                ))
            } else if size <= this.outgoing_low_water && this.app_writing_paused {
                this.app_writing_paused = false;
                Some((
                    intern!(py, "resume_writing"),
                    "protocol.resume_writing() failed",
                ))
            } else {
                None
            }
        };
        let Some((method, message)) = call else {
            return Ok(());
        };
        let app = slf.try_borrow()?.app_protocol.clone_ref(py);
        match app.bind(py).call_method0(method) {
            Ok(_) => Ok(()),
            Err(err) => Self::report_flow_control_error(slf, err, message),
        }
    }

    /// Pauses or resumes reading the socket at the incoming BIO's marks.
    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = slf.try_borrow()?._get_read_buffer_size(py)?;
        let call = {
            let mut this = slf.try_borrow_mut()?;
            if size >= this.incoming_high_water && !this.ssl_reading_paused {
                this.ssl_reading_paused = true;
                Some(intern!(py, "pause_reading"))
            } else if size <= this.incoming_low_water && this.ssl_reading_paused {
                this.ssl_reading_paused = false;
                Some(intern!(py, "resume_reading"))
            } else {
                None
            }
        };
        let Some(method) = call else {
            return Ok(());
        };
        let transport = slf.try_borrow()?.transport.clone_ref(py);
        transport.bind(py).call_method0(method).map(drop)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for object in [
            &self.state,
            &self.sslobj,
            &self.cipher,
            &self.incoming,
            &self.outgoing,
            &self.transport,
            &self.app_protocol,
            &self.write_backlog,
        ] {
            visit.call(object)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        Python::attach(|py| {
            let none = py.None();
            for object in [
                &mut self.state,
                &mut self.sslobj,
                &mut self.cipher,
                &mut self.incoming,
                &mut self.outgoing,
                &mut self.transport,
                &mut self.app_protocol,
                &mut self.write_backlog,
            ] {
                *object = none.clone_ref(py);
            }
        });
    }
}

/// Flushes the TLS layers `waiting` for the iteration's end, all of them even if one fails.
pub(crate) fn flush_deferred(py: Python<'_>, waiting: Vec<Py<PyAny>>) -> PyResult<()> {
    let mut first_error = None;
    for layer in waiting {
        let layer = layer.bind(py);
        if let Ok(layer) = layer.cast::<TlsLayer>()
            && let Err(err) = TlsLayer::_flush_deferred(layer)
        {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}
