//! System-call errors as Python sees them from the stdlib: `OSError(errno, strerror)`, which
//! Python turns into the matching subclass (`ConnectionResetError`, `BrokenPipeError`...) with
//! `errno` set. pyo3's own conversion of `std::io::Error` keeps only the message, so code that
//! reads `exc.errno` (as asyncio and its users do) would see None.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use rustix::io::Errno;

/// The exception the `socket` and `os` modules raise for `err`.
pub(crate) fn os_error(py: Python<'_>, err: Errno) -> PyErr {
    static STRERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let code = err.raw_os_error();
    match STRERROR
        .import(py, "os", "strerror")
        .and_then(|strerror| strerror.call1((code,)))
    {
        Ok(message) => PyOSError::new_err((code, message.unbind())),
        Err(failed) => failed,
    }
}

/// `os_error` for a `std::io::Error` (the poller's); one without an errno keeps its message.
pub(crate) fn io_error(py: Python<'_>, err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => os_error(py, Errno::from_raw_os_error(code)),
        None => PyErr::from(err),
    }
}
