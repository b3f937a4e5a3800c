//! Handles: a scheduled callback with its arguments and its contextvars context, as returned
//! by `call_soon` (`Handle`) and `call_later`/`call_at` (`TimerHandle`).
//!
//! Rust because one is made and run per callback: the arguments stay in the tuple Python
//! passed us, the context is entered through the C API, and the call goes through vectorcall.
//!
//! While a running loop holds a handle (pending in the ready queue or the timer heap, or
//! watching an fd), neither the handle nor the context copy it made is tracked by Python's
//! cycle collector: with a deep ready queue, collections otherwise spend most of their time
//! walking them (measured: 70% of a call_soon benchmark for handles, a further quarter for
//! contexts). That loses no garbage, because a running loop is alive and keeps its pending
//! handles alive. Once the loop lets go (`LoopHeld` is dropped: the callback ran, the cancelled
//! timer left the heap, the watch ended, the loop closed), a handle that something else still
//! holds is tracked again, and so is its context once the callback ran or was cancelled: a
//! cycle through a finished handle (say a request object kept in a context variable that holds
//! the request's timer handle) is collected as it is with asyncio's handles.
//!
//! A loop that is not running can become garbage, and its pending handles usually lead back to
//! it (`call_soon(loop.stop)`, a server's accept watch, a sleeping task's timer). So handles
//! made while the loop is not running stay tracked, and when the loop stops every handle it
//! still holds is tracked again (`LoopHeld::track`): the loop's `__traverse__` then shows the
//! collector the whole cycle, and an unclosed loop dropped with work pending is collected (and
//! closed by its `__del__`) as stock asyncio's is, instead of keeping its poller's fds forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyClass, PyClassInitializer};
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::GilCell;
use crate::timers::Timer;

/// A callback and its arguments, handed back with the error when a one-shot callback fails.
pub type FailedCallback = (Py<PyAny>, Py<PyTuple>);

struct Callback {
    func: Py<PyAny>,
    args: Py<PyTuple>,
}

/// The contextvars context a callback runs in. A copy we made ourselves (`context=None`) is
/// untracked until the callback has run or was cancelled (see the module doc); CPython's
/// context dealloc unlinks the object from the collector's lists, so it must be tracked again
/// before our reference goes, which `Drop` makes sure of.
struct SlotContext {
    context: Py<PyAny>,
    untracked: AtomicBool,
}

impl SlotContext {
    fn given(context: Py<PyAny>) -> Self {
        Self {
            context,
            untracked: AtomicBool::new(false),
        }
    }

    /// A copy of the current context; `untrack`: hidden from the collector (module doc).
    fn copied(py: Python<'_>, untrack: bool) -> PyResult<Self> {
        let context = copy_current_context(py)?;
        if untrack {
            // SAFETY: GIL held; `context` is a fresh Context only we reference, tracked by its
            // constructor. Untracking is undone by `track` before our reference goes.
            unsafe { ffi::PyObject_GC_UnTrack(context.as_ptr().cast()) };
        }
        Ok(Self {
            context,
            untracked: AtomicBool::new(untrack),
        })
    }

    fn track(&self, py: Python<'_>) {
        if self.untracked.swap(false, Ordering::Relaxed) {
            track_again(py, &self.context);
        }
    }
}

/// Puts a handle and its context back under the cycle collector (each if not tracked).
pub fn track_handle<T: HandleClass>(py: Python<'_>, handle: &Py<T>) {
    track_again(py, handle);
    handle.get().slot().context.track(py);
}

/// Puts `object` back under the cycle collector if it is not tracked.
fn track_again<T>(_py: Python<'_>, object: &Py<T>) {
    let ptr = object.as_ptr();
    // SAFETY: GIL held (the token); `ptr` is alive (the caller holds a reference). Tracking an
    // object that is already tracked is a fatal error, hence the check.
    unsafe {
        if ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

impl Drop for SlotContext {
    fn drop(&mut self) {
        if *self.untracked.get_mut() {
            Python::attach(|py| self.track(py));
        }
    }
}

fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    static ISCOROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ISCOROUTINE
        .import(obj.py(), "asyncio", "iscoroutine")
        .and_then(|f| f.call1((obj,)))
        .and_then(|r| r.is_truthy())
        .unwrap_or(false)
}
/// The always-on part of asyncio's `_check_callback`: a coroutine or a non-callable is a
/// `TypeError` at the call, not an error much later in the exception handler.
#[inline]
pub fn check_callable(callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
    if callback.is_callable() {
        return Ok(());
    }
    if is_coroutine(callback) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "coroutines cannot be used with {method}()"
        )));
    }
    let shown = callback.repr().map(|r| r.to_string()).unwrap_or_default();
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "a callable object was expected by {method}(), got {shown}"
    )))
}

/// What `Handle` and `TimerHandle` share: the callback, its context and the cancelled flag.
pub struct CallbackSlot {
    callback: GilCell<Option<Callback>>,
    context: SlotContext,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
}

/// Runs `f` with `context` (a `contextvars.Context`) entered, as `Context.run` does.
#[inline]
pub fn call_in_context<R>(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    // SAFETY: GIL held; `context` is a live Context kept alive by the caller for the call.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = f();
    // SAFETY: paired with the successful Enter above, on the same thread.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    result
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
        untrack: bool,
    ) -> PyResult<Self> {
        let context = match context {
            Some(ctx) if !ctx.is_none(py) => SlotContext::given(ctx),
            _ => SlotContext::copied(py, untrack)?,
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
        self.context.track(py);
        drop(released); // outside the borrow: releasing may run `__del__`
        Ok(true)
    }

    /// Runs the callback once and lets go of it (and of its arguments). A cancelled slot does
    /// nothing. On failure the callback is handed back for the error report.
    #[inline]
    pub fn run_once(&self, py: Python<'_>) -> Result<(), (PyErr, FailedCallback)> {
        let Ok(Some(callback)) = self.callback.with(py, Option::take) else {
            return Ok(());
        };
        let result = self.call(py, &callback);
        self.context.track(py);
        match result {
            Ok(()) => Ok(()),
            Err(err) => Err((err, (callback.func, callback.args))),
        }
    }

    /// Lets go of the callback without marking the handle cancelled (after a debug-mode run,
    /// which keeps it until the slow-callback report has named it).
    pub fn release(&self, py: Python<'_>) -> PyResult<()> {
        let released = self.callback.with(py, Option::take)?;
        self.context.track(py);
        drop(released); // outside the borrow: releasing may run `__del__`
        Ok(())
    }

    /// Runs the callback and keeps it, for I/O handles that run once per readiness event.
    #[inline]
    pub fn run_again(&self, py: Python<'_>) -> PyResult<()> {
        let callback = self.callback.with(py, |cb| {
            cb.as_ref().map(|c| Callback {
                func: c.func.clone_ref(py),
                args: c.args.clone_ref(py),
            })
        })?;
        match callback {
            Some(callback) => self.call(py, &callback),
            None => Ok(()),
        }
    }

    #[inline]
    fn call(&self, py: Python<'_>, callback: &Callback) -> PyResult<()> {
        let ctx = self.context.context.as_ptr();
        let (func, args) = (callback.func.as_ptr(), callback.args.as_ptr());
        // SAFETY: GIL held; `func`, `args` and `ctx` are live references held by `callback`
        // and `self` for the whole call. Enter/Exit are paired on every path, as in
        // `Context.run`.
        unsafe {
            if ffi::PyContext_Enter(ctx) < 0 {
                return Err(PyErr::fetch(py));
            }
            let result = if ffi::PyTuple_GET_SIZE(args) == 0 {
                ffi::PyObject_CallNoArgs(func)
            } else {
                ffi::PyObject_Call(func, args, std::ptr::null_mut())
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

    /// What the cycle collector sees through a handle (once the loop no longer holds it).
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(callback) = self.callback.peek()
            && let Some(callback) = callback.as_ref()
        {
            visit.call(&callback.func)?;
            visit.call(&callback.args)?;
        }
        visit.call(&self.context.context)?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
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
            // asyncio (3.13+) shows the arguments only in debug mode, which is when a handle
            // records where it was made.
            let debug = self.source_traceback.is_some();
            let format = FORMAT_SOURCE.import(py, "oxloop._compat", "format_callback_source")?;
            parts.push(format.call1((func, args, debug))?.extract()?);
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

/// A handle class: `Handle` or `TimerHandle`.
pub trait HandleClass: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    fn slot(&self) -> &CallbackSlot;
}

/// A handle as the loop holds it: the loop's reference, with the handle untracked by the
/// cycle collector until the loop lets go (see the module doc).
pub struct LoopHeld<T: HandleClass> {
    handle: Py<T>,
    /// Set by `release`, so that `Drop` has nothing left to do.
    settled: bool,
}

impl<T: HandleClass + Into<PyClassInitializer<T>>> LoopHeld<T> {
    /// Makes the handle object, held by the loop; `untrack` (the loop is running): hidden
    /// from the collector until the loop lets go or stops (module doc).
    pub fn new(py: Python<'_>, value: T, untrack: bool) -> PyResult<Self> {
        let handle = Py::new(py, value)?;
        if untrack {
            // SAFETY: GIL held; `handle` is a fully initialised object we own. Untracking only
            // removes it from the collector's lists; it is idempotent, and pyo3's dealloc uses
            // the public untrack call, which accepts an untracked object.
            unsafe { ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
        } else {
            // One from pyo3's freelist comes back untracked (its allocator only re-inits it).
            track_again(py, &handle);
        }
        Ok(Self {
            handle,
            settled: false,
        })
    }
}

impl<T: HandleClass> LoopHeld<T> {
    pub fn get(&self) -> &T {
        self.handle.get()
    }

    /// Another reference to the handle object, for Python.
    pub fn object(&self, py: Python<'_>) -> Py<T> {
        self.handle.clone_ref(py)
    }

    /// The loop's reference, for its `__traverse__`.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.handle)
    }

    /// The loop stopped running: the handle and its context go back under the collector,
    /// which may now have to collect the loop through them (module doc).
    pub fn track(&self, py: Python<'_>) {
        track_handle(py, &self.handle);
    }

    /// The loop lets go of the handle (the cheap way, with the GIL in hand; dropping it
    /// does the same).
    pub fn release(mut self, py: Python<'_>) {
        self.settle(py);
    }

    fn settle(&mut self, py: Python<'_>) {
        self.settled = true;
        let ptr = self.handle.as_ptr();
        // SAFETY: GIL held; `ptr` is alive (our reference goes only after this).
        let shared = unsafe { ffi::Py_REFCNT(ptr) } > 1;
        // A handle that only we hold is about to be freed and needs no tracking.
        if shared {
            track_again(py, &self.handle);
            self.handle.get().slot().context.track(py);
        }
    }
}

impl<T: HandleClass> Drop for LoopHeld<T> {
    fn drop(&mut self) {
        if !self.settled {
            Python::attach(|py| self.settle(py));
        }
    }
}

/// Declares a handle class's Python methods: those `Handle` and `TimerHandle` share (the
/// slot's), then the class's own. A macro because pyo3 takes one `#[pymethods]` block per
/// class, and asyncio's `TimerHandle` has every method of `Handle`.
macro_rules! handle_methods {
    ($class:ident { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            fn cancelled(&self) -> bool {
                self.slot.is_cancelled()
            }

            /// The contextvars context the callback runs in.
            fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
                self.slot.context.context.clone_ref(py)
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
                self.slot.run_again(py)
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                self.slot.traverse(&visit)
            }

            $($own)*
        }

        impl HandleClass for $class {
            fn slot(&self) -> &CallbackSlot {
                &self.slot
            }
        }
    };
}

/// A callback scheduled by `call_soon`, `call_soon_threadsafe` or `add_reader`/`add_writer`.
#[pyclass(frozen, weakref, freelist = 256, module = "oxloop._oxloop")]
pub struct Handle {
    pub slot: CallbackSlot,
}

handle_methods!(Handle {
    /// Cancels the callback: it will not run, and its references are released now.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.slot.cancel(py).map(drop)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec!["Handle".to_owned()];
        self.slot.repr_info(py, &mut parts)?;
        Ok(format!("<{}>", parts.join(" ")))
    }
});

/// A callback scheduled for a point in time by `call_later` or `call_at`.
#[pyclass(frozen, weakref, freelist = 256, module = "oxloop._oxloop")]
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

    /// The loop time the timer is due at.
    pub fn deadline(&self) -> f64 {
        self.when
    }
}

handle_methods!(TimerHandle {
    /// Cancels the timer: it will not run, and its references are released now.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        if self.slot.cancel(py)? && self.scheduled.load(Ordering::Relaxed) {
            self.heap_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The loop time at which the callback is scheduled to run.
    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec!["TimerHandle".to_owned(), format!("when={}", self.when)];
        self.slot.repr_info(py, &mut parts)?;
        Ok(format!("<{}>", parts.join(" ")))
    }
});

impl Timer for LoopHeld<TimerHandle> {
    fn is_cancelled(&self) -> bool {
        self.get().slot.is_cancelled()
    }

    fn unschedule(&self) {
        self.get().scheduled.store(false, Ordering::Relaxed);
    }
}
