//! `BufferView`: a contiguous view of a Python object's buffer (bytes, bytearray, memoryview,
//! array, mmap...), for system calls that read from or write into Python memory directly.

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;

/// A C-contiguous view of an object's buffer, released on drop. Views only live inside one
/// call with the GIL held, so the exporter cannot resize the memory under them.
pub struct BufferView {
    view: Box<ffi::Py_buffer>,
}

impl BufferView {
    fn get(obj: &Bound<'_, PyAny>, flags: std::os::raw::c_int) -> PyResult<Self> {
        let mut view: Box<ffi::Py_buffer> = Box::new(ffi::Py_buffer::new());
        // SAFETY: GIL held; `view` is a valid Py_buffer struct. On success the exporter
        // filled it and `drop` releases it exactly once.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self { view })
    }

    /// A read-only view (what `socket.send` accepts).
    pub fn readable(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::get(obj, ffi::PyBUF_SIMPLE)
    }

    /// A writable view (what `socket.recv_into` accepts). A read-only buffer raises the
    /// `TypeError` the socket method raises, not the exporter's `BufferError`.
    pub fn writable(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        Self::get(obj, ffi::PyBUF_WRITABLE).map_err(|err| {
            if err.is_instance_of::<PyBufferError>(py) {
                let kind = obj
                    .get_type()
                    .name()
                    .map(|name| name.to_string())
                    .unwrap_or_default();
                PyTypeError::new_err(format!(
                    "argument 'buffer' must be read-write bytes-like object, not {kind}"
                ))
            } else {
                err
            }
        })
    }

    fn len(&self) -> usize {
        if self.view.buf.is_null() {
            return 0;
        }
        usize::try_from(self.view.len).unwrap_or(0)
    }

    pub fn as_slice(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: PyBUF_SIMPLE/PyBUF_WRITABLE without PyBUF_STRIDES ask for a C-contiguous
        // buffer of `len` bytes at `buf`, valid until the view is released in `drop`.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }

    /// The bytes of a view made by `writable` (an empty slice for a read-only view).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len();
        if len == 0 || self.view.readonly != 0 {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, and the exporter granted write access (readonly == 0,
        // which PyBUF_WRITABLE guarantees); `&mut self` makes this the only live slice.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for BufferView {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once;
        // views are made and dropped with the GIL held (see the type doc).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}
