//! The TLS layer's handshake and shutdown steps: `SSLProtocol._do_handshake` and `_do_shutdown`,
//! the two places asyncio's state machine calls the TLS object itself (`do_handshake`,
//! `unwrap`). Here they call the `ssl` module's C object straight from Rust, as the read and
//! write paths do, instead of through `ssl.SSLObject`'s Python methods; what decides the next
//! state (`_on_handshake_complete`, `_on_shutdown_complete`, timeouts) stays asyncio's, called
//! by name so a version's own code (and a test's patch) is what runs.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::{TlsLayer, is_again};

/// True for an `ssl.SSLError` that is not one of asyncio's `SSLAgainErrors` (those are
/// tested first).
fn is_ssl_error(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    static SSL_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let ssl_error = SSL_ERROR.import(py, "ssl", "SSLError")?;
    err.value(py).is_instance(ssl_error)
}

impl TlsLayer {
    /// Calls the TLS object's `SSLObject` method `name`, on the C object under it when the
    /// `SSLObject` is the stdlib's own (`c_name` there: `unwrap` is the C `shutdown`).
    fn call_tls_object(slf: &Bound<'_, Self>, name: &str, c_name: &str) -> PyResult<()> {
        let py = slf.py();
        let (sslobj, cipher) = {
            let this = slf.try_borrow()?;
            (this.sslobj.clone_ref(py), this.cipher.clone_ref(py))
        };
        if cipher.is(&sslobj) {
            sslobj.bind(py).call_method0(name)?;
        } else {
            cipher.bind(py).call_method0(c_name)?;
        }
        Ok(())
    }
}

#[pymethods]
impl TlsLayer {
    /// One step of the handshake: more records for the peer, or its end (success or failure)
    /// to `_on_handshake_complete`.
    fn _do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let outcome = match Self::call_tls_object(slf, "do_handshake", "do_handshake") {
            Ok(()) => py.None().into_bound(py),
            Err(err) if is_again(py, &err)? => {
                slf.call_method0(intern!(py, "_process_outgoing"))?;
                return Ok(());
            }
            Err(err) if is_ssl_error(py, &err)? => err.into_value(py).into_bound(py).into_any(),
            Err(err) => return Err(err),
        };
        slf.call_method1(intern!(py, "_on_handshake_complete"), (outcome,))?;
        Ok(())
    }

    /// One step of the shutdown: send close_notify (unless the peer's EOF came first) and, once
    /// the exchange is over, EOF to the application and the shutdown's end.
    fn _do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let eof_received = slf.getattr(intern!(py, "_eof_received"))?.is_truthy()?;
        let result = if eof_received {
            Ok(())
        } else {
            Self::call_tls_object(slf, "unwrap", "shutdown")
        };
        match result {
            Ok(()) => {
                slf.call_method0(intern!(py, "_process_outgoing"))?;
                slf.call_method0(intern!(py, "_call_eof_received"))?;
                slf.call_method1(intern!(py, "_on_shutdown_complete"), (py.None(),))?;
            }
            Err(err) if is_again(py, &err)? => {
                slf.call_method0(intern!(py, "_process_outgoing"))?;
            }
            Err(err) if is_ssl_error(py, &err)? => {
                slf.call_method1(intern!(py, "_on_shutdown_complete"), (err.into_value(py),))?;
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }
}
