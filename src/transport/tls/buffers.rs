//! The TLS layer's buffers (`../tls.rs`): what connections receive ciphertext into and decrypt
//! into, one of each per thread and shared by the thread's connections, as nothing runs between
//! filling one and emptying it. Per thread, not per process: `SSLObject.read` lets go of the
//! GIL while it decrypts, so a loop in another thread would write into a shared buffer between
//! two reads of a record sequence. Per thread, not per connection: asyncio allocates and zeroes
//! 256 KiB per connection, 2.7% of a TLS handshake's CPU.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyMemoryView, PyString};

/// asyncio's `SSLProtocol.max_size`: the most one `SSLObject.read()` returns.
pub(super) const MAX_READ: usize = 256 * 1024;

/// The calling thread's object under `name`, made by `make` on first use, on a
/// `threading.local`, which Python frees with its thread.
fn per_thread<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyString>,
    make: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    static PER_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let per_thread = PER_THREAD
        .get_or_try_init(py, || {
            py.import("threading")?
                .call_method0("local")
                .map(Bound::unbind)
        })?
        .bind(py);
    if let Ok(object) = per_thread.getattr(name) {
        return Ok(object);
    }
    let object = make()?;
    per_thread.setattr(name, &object)?;
    Ok(object)
}

fn new_buffer(py: Python<'_>) -> PyResult<Bound<'_, PyByteArray>> {
    PyByteArray::new_with(py, MAX_READ, |_| Ok(()))
}

/// What every connection of the thread decrypts into before the bytes are copied out.
pub(super) fn read_scratch(py: Python<'_>) -> PyResult<Bound<'_, PyByteArray>> {
    let name = intern!(py, "oxloop_tls_read_scratch");
    let scratch = per_thread(py, name, || new_buffer(py).map(Bound::into_any))?;
    Ok(scratch.cast_into::<PyByteArray>()?)
}

/// A memoryview of what every connection of the thread receives ciphertext into;
/// `buffer_updated` empties it into the incoming BIO before anything else runs.
pub(super) fn receive_buffer(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let name = intern!(py, "oxloop_tls_receive_buffer");
    per_thread(py, name, || {
        Ok(PyMemoryView::from(new_buffer(py)?.as_any())?.into_any())
    })
}
