//! Handles: a scheduled callback with its arguments and its contextvars context, as returned
//! by `call_soon` (`Handle`) and `call_later`/`call_at` (`TimerHandle`).
//!
//! Rust because one is made and run per callback: the arguments stay in the tuple Python
//! passed us, the context is entered through the C API, and the call goes through vectorcall.
//! Cancelling drops the callback and its arguments at once, as asyncio does, so a cancelled
//! handle no longer keeps them alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::GilCell;
use crate::timers::Timer;

struct Callback {
    func: Py<PyAny>,
    args: Py<PyTuple>,
}

/// What `Handle` and `TimerHandle` share: the callback, its context and the cancelled flag.
pub struct CallbackSlot {
    callback: GilCell<Option<Callback>>,
    context: Py<PyAny>,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
}

/// A copy of the calling thread's current context, as asyncio takes for `context=None`.
pub fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: called with the GIL held; returns a new reference or NULL with an exception set.
    unsafe {
        let ctx = ffi::PyContext_CopyCurrent();
        Bound::from_owned_ptr_or_err(py, ctx).map(Bound::unbind)
    }
}

impl CallbackSlot {
    pub fn new(
        py: Python<'_>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        source_traceback: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let context = match context {
            Some(ctx) if !ctx.is_none(py) => ctx,
            _ => copy_current_context(py)?,
        };
        Ok(Self {
            callback: GilCell::new(Some(Callback { func, args })),
            context,
            cancelled: AtomicBool::new(false),
            source_traceback,
        })
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Flags the slot cancelled and releases the callback. Returns false if it already was.
    pub fn cancel(&self, py: Python<'_>) -> PyResult<bool> {
        if self.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        let released = self.callback.with(py, Option::take)?;
        drop(released); // outside the borrow: releasing may run `__del__`
        Ok(true)
    }

    /// Runs the callback inside its context. A cancelled slot does nothing.
    #[inline]
    pub fn run(&self, py: Python<'_>) -> PyResult<()> {
        let callback = self.callback.with(py, |cb| {
            cb.as_ref()
                .map(|c| (c.func.clone_ref(py), c.args.clone_ref(py)))
        })?;
        let Some((func, args)) = callback else {
            return Ok(());
        };
        let ctx = self.context.as_ptr();
        // SAFETY: GIL held; `func`, `args` and `ctx` are live references we own for the whole
        // call. Enter/Exit are paired on every path, as `Context.run` does.
        unsafe {
            if ffi::PyContext_Enter(ctx) < 0 {
                return Err(PyErr::fetch(py));
            }
            let result = if ffi::PyTuple_GET_SIZE(args.as_ptr()) == 0 {
                ffi::PyObject_CallNoArgs(func.as_ptr())
            } else {
                ffi::PyObject_Call(func.as_ptr(), args.as_ptr(), std::ptr::null_mut())
            };
            let exit_failed = ffi::PyContext_Exit(ctx) < 0;
            if result.is_null() || exit_failed {
                if !result.is_null() {
                    ffi::Py_DECREF(result);
                }
                return Err(PyErr::fetch(py));
            }
            ffi::Py_DECREF(result);
        }
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.context)?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
        }
        if let Some(cb) = self.callback.peek_for_gc()
            && let Some(cb) = cb.as_ref()
        {
            visit.call(&cb.func)?;
            visit.call(&cb.args)?;
        }
        Ok(())
    }

    fn callback_parts(&self, py: Python<'_>) -> PyResult<Option<(Py<PyAny>, Py<PyTuple>)>> {
        self.callback.with(py, |cb| {
            cb.as_ref()
                .map(|c| (c.func.clone_ref(py), c.args.clone_ref(py)))
        })
    }

    fn source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|tb| tb.clone_ref(py))
    }

    /// The words inside asyncio's `<Handle ...>` repr after the class name.
    fn repr_info(&self, py: Python<'_>, parts: &mut Vec<String>) -> PyResult<()> {
        static FORMAT_SOURCE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        if self.is_cancelled() {
            parts.push("cancelled".to_owned());
        }
        if let Some((func, args)) = self.callback_parts(py)? {
            let format =
                FORMAT_SOURCE.import(py, "asyncio.format_helpers", "_format_callback_source")?;
            parts.push(format.call1((func, args))?.extract()?);
        }
        if let Some(tb) = &self.source_traceback {
            let tb = tb.bind(py);
            if let Ok(frame) = tb.get_item(-1) {
                let file: String = frame.get_item(0)?.extract()?;
                let line: i64 = frame.get_item(1)?.extract()?;
                parts.push(format!("created at {file}:{line}"));
            }
        }
        Ok(())
    }
}

/// A callback scheduled by `call_soon`, `call_soon_threadsafe` or `add_reader`/`add_writer`.
#[pyclass(frozen, freelist = 256, module = "oxloop._oxloop")]
pub struct Handle {
    pub slot: CallbackSlot,
}

#[pymethods]
impl Handle {
    /// Cancels the callback: it will not run, and its references are released now.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.slot.cancel(py).map(drop)
    }

    fn cancelled(&self) -> bool {
        self.slot.is_cancelled()
    }

    /// The contextvars context the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.slot.context.clone_ref(py)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.slot.callback_parts(py)?.map(|(f, _)| f))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        Ok(self.slot.callback_parts(py)?.map(|(_, a)| a))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.slot.source_traceback(py)
    }

    /// Runs the callback now, in its context (what the loop does when its turn comes).
    fn _run(&self, py: Python<'_>) -> PyResult<()> {
        self.slot.run(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec!["Handle".to_owned()];
        self.slot.repr_info(py, &mut parts)?;
        Ok(format!("<{}>", parts.join(" ")))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.slot.traverse(&visit)
    }
}

/// A callback scheduled for a point in time by `call_later` or `call_at`.
#[pyclass(frozen, freelist = 256, module = "oxloop._oxloop")]
pub struct TimerHandle {
    pub slot: CallbackSlot,
    when: f64,
    /// True while the timer sits in the loop's heap; a cancel then counts it as dead weight.
    scheduled: AtomicBool,
    heap_cancelled: Arc<AtomicUsize>,
}

impl TimerHandle {
    pub fn new(slot: CallbackSlot, when: f64, heap_cancelled: Arc<AtomicUsize>) -> Self {
        Self {
            slot,
            when,
            scheduled: AtomicBool::new(true),
            heap_cancelled,
        }
    }
}

#[pymethods]
impl TimerHandle {
    /// Cancels the timer: it will not run, and its references are released now.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        if self.slot.cancel(py)? && self.scheduled.load(Ordering::Relaxed) {
            self.heap_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.slot.is_cancelled()
    }

    /// The loop time at which the callback is scheduled to run.
    fn when(&self) -> f64 {
        self.when
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.slot.context.clone_ref(py)
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.slot.callback_parts(py)?.map(|(f, _)| f))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        Ok(self.slot.callback_parts(py)?.map(|(_, a)| a))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.slot.source_traceback(py)
    }

    fn _run(&self, py: Python<'_>) -> PyResult<()> {
        self.slot.run(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec!["TimerHandle".to_owned(), format!("when={}", self.when)];
        self.slot.repr_info(py, &mut parts)?;
        Ok(format!("<{}>", parts.join(" ")))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.slot.traverse(&visit)
    }
}

impl Timer for Py<TimerHandle> {
    fn is_cancelled(&self) -> bool {
        self.get().slot.is_cancelled()
    }

    fn unschedule(&self) {
        self.get().scheduled.store(false, Ordering::Relaxed);
    }
}
