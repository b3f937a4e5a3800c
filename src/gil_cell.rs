//! `GilCell`: mutable loop state shared by Python-visible objects without locks.
//!
//! The loop's state (ready queue, timer heap, fd table) is touched only by code holding the
//! GIL: the loop thread while it runs callbacks, and other threads in `call_soon_threadsafe`.
//! The GIL already serialises them, so a lock would be pure cost on the per-callback path.
//! A `RefCell` inside turns a re-entrant access (a bug: state borrowed across a call into
//! Python) into a `RuntimeError` instead of undefined behaviour.
//!
//! Rule for callers: the closure passed to `with` must not call into Python or drop Python
//! objects (a drop can run `__del__`, which may re-enter the loop). Move values out instead.

use std::cell::RefCell;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

pub struct GilCell<T>(RefCell<T>);

// SAFETY: every access goes through `with`, which takes a `Python` token, so the calling thread
// is attached to the interpreter. The module declares `gil_used`, so even free-threaded builds
// keep the GIL while oxloop is imported, and the GIL admits one attached thread at a time. No
// borrow outlives `with`, so no borrow survives a GIL hand-over.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    #[inline]
    pub fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> PyResult<R> {
        match self.0.try_borrow_mut() {
            Ok(mut value) => Ok(f(&mut value)),
            Err(_) => Err(PyRuntimeError::new_err(
                "oxloop internal error: loop state re-entered while borrowed",
            )),
        }
    }

    /// A shared look at the value without a `Python` token, for the cycle collector's
    /// `__traverse__` (which runs with the GIL held but may not use the Python API). None if
    /// the value is borrowed right now; the collector then keeps what it could not see.
    pub fn peek(&self) -> Option<std::cell::Ref<'_, T>> {
        self.0.try_borrow().ok()
    }

    /// A mutable look for `__clear__`, which the collector calls with the GIL held. The
    /// caller moves Python references out and drops them after the borrow ends.
    pub fn peek_mut(&self) -> Option<std::cell::RefMut<'_, T>> {
        self.0.try_borrow_mut().ok()
    }
}
