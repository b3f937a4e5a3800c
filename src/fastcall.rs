//! Raw `METH_FASTCALL` entry points for the scheduling methods (`call_soon`,
//! `call_soon_threadsafe`, `call_later`, `call_at`).
//!
//! These are the most called methods of any asyncio loop: every task step and every future
//! callback goes through `call_soon`. pyo3's generic argument parser costs about 300
//! instructions a call there (measured with callgrind), a fifth of the loop's share of a task
//! step. Their signature is fixed and small — `(required..., *args, context=None)` — so this
//! module parses it directly from the vectorcall arguments and hands over to `LoopCore`,
//! through one generic entry point (`fastcall`) instantiated once per method.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use crate::event_loop::LoopCore;

/// The arguments of a scheduling call, parsed.
struct ScheduleArgs<'py, const N: usize> {
    required: [Bound<'py, PyAny>; N],
    args: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `(required[0], ..., required[N-1], *args, context=None)` from vectorcall arguments.
///
/// # Safety
/// `args` must point to `nargs` positional arguments followed by one value per name in
/// `kwnames` (NULL or a tuple of str), all borrowed references valid for the call: the
/// contract of a `METH_FASTCALL | METH_KEYWORDS` function.
unsafe fn parse<'py, const N: usize>(
    py: Python<'py>,
    method: &str,
    names: [&str; N],
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<ScheduleArgs<'py, N>> {
    let nargs = usize::try_from(nargs).unwrap_or(0);
    // SAFETY: the caller guarantees `args[..nargs + len(kwnames)]` are valid borrowed objects.
    let arg = |i: usize| unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) };
    if nargs < N {
        let missing = names[nargs];
        return Err(PyTypeError::new_err(format!(
            "{method}() missing required positional argument: '{missing}'"
        )));
    }
    let required: [Bound<'py, PyAny>; N] = std::array::from_fn(arg);
    let extra = if nargs == N {
        PyTuple::empty(py)
    } else {
        PyTuple::new(py, (N..nargs).map(arg))?
    };
    let mut context = None;
    if !kwnames.is_null() {
        // SAFETY: a non-NULL `kwnames` is a tuple of str (vectorcall protocol).
        let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
        let kwnames = kwnames.cast::<PyTuple>()?;
        let expected = pyo3::intern!(py, "context");
        for (i, name) in kwnames.iter().enumerate() {
            // CPython passes interned keyword names, so identity settles the usual case.
            let is_context = name.is(expected) || name.cast::<PyString>()?.to_str()? == "context";
            if !is_context {
                return Err(PyTypeError::new_err(format!(
                    "{method}() got an unexpected keyword argument '{name}'"
                )));
            }
            context = Some(arg(nargs + i));
        }
    }
    Ok(ScheduleArgs {
        required,
        args: extra,
        context,
    })
}

/// Runs `body` as the body of a C entry point: errors are restored as the Python exception,
/// and a Rust panic becomes a `RuntimeError` instead of unwinding into CPython.
fn entry_point<F>(body: F) -> *mut ffi::PyObject
where
    F: for<'py> FnOnce(Python<'py>) -> PyResult<Py<PyAny>>,
{
    // SAFETY: CPython calls method implementations with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let outcome = catch_unwind(AssertUnwindSafe(|| body(py)));
    let err = match outcome {
        Ok(Ok(value)) => return value.into_ptr(),
        Ok(Err(err)) => err,
        Err(_) => PyRuntimeError::new_err("oxloop internal error: a Rust panic was caught"),
    };
    err.restore(py);
    std::ptr::null_mut()
}

/// # Safety
/// `slf` must be a valid borrowed object reference (checked to be a `LoopCore` here).
unsafe fn loop_ref<'py>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
) -> PyResult<Bound<'py, LoopCore>> {
    // SAFETY: the caller guarantees `slf` is a valid borrowed reference.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    Ok(slf.cast_into::<LoopCore>()?)
}

/// One scheduling method: its name, its required positional parameters, and what it does
/// with the parsed arguments.
trait Schedule<const N: usize> {
    const NAME: &'static str;
    const REQUIRED: [&'static str; N];
    fn call<'py>(
        slf: &Bound<'py, LoopCore>,
        required: [Bound<'py, PyAny>; N],
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>>;
}

struct CallSoon;
struct CallSoonThreadsafe;
struct CallLater;
struct CallAt;

impl Schedule<1> for CallSoon {
    const NAME: &'static str = "call_soon";
    const REQUIRED: [&'static str; 1] = ["callback"];
    fn call<'py>(
        slf: &Bound<'py, LoopCore>,
        [callback]: [Bound<'py, PyAny>; 1],
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(LoopCore::call_soon_impl(slf, callback, args, context)?.into_any())
    }
}

impl Schedule<1> for CallSoonThreadsafe {
    const NAME: &'static str = "call_soon_threadsafe";
    const REQUIRED: [&'static str; 1] = ["callback"];
    fn call<'py>(
        slf: &Bound<'py, LoopCore>,
        [callback]: [Bound<'py, PyAny>; 1],
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(LoopCore::call_soon_threadsafe_impl(slf, callback, args, context)?.into_any())
    }
}

impl Schedule<2> for CallLater {
    const NAME: &'static str = "call_later";
    const REQUIRED: [&'static str; 2] = ["delay", "callback"];
    fn call<'py>(
        slf: &Bound<'py, LoopCore>,
        [delay, callback]: [Bound<'py, PyAny>; 2],
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(LoopCore::call_later_impl(slf, &delay, callback, args, context)?.into_any())
    }
}

impl Schedule<2> for CallAt {
    const NAME: &'static str = "call_at";
    const REQUIRED: [&'static str; 2] = ["when", "callback"];
    fn call<'py>(
        slf: &Bound<'py, LoopCore>,
        [when, callback]: [Bound<'py, PyAny>; 2],
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(LoopCore::call_at_impl(slf, &when, callback, args, context)?.into_any())
    }
}

/// The `METH_FASTCALL | METH_KEYWORDS` entry point of scheduling method `M`.
unsafe extern "C" fn fastcall<const N: usize, M: Schedule<N>>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry_point(|py| {
        // SAFETY: CPython passes the METH_FASTCALL | METH_KEYWORDS arguments.
        let (slf, a) = unsafe {
            (
                loop_ref(py, slf)?,
                parse(py, M::NAME, M::REQUIRED, args, nargs, kwnames)?,
            )
        };
        M::call(&slf, a.required, a.args, a.context)
    })
}

/// A method definition CPython keeps a pointer to for the life of the type.
struct MethodDef(UnsafeCell<ffi::PyMethodDef>);

// SAFETY: CPython only reads the definition after `install` hands it over, with the GIL held;
// nothing in Rust touches it again.
unsafe impl Sync for MethodDef {}

const fn method(
    name: &'static CStr,
    doc: &'static CStr,
    function: ffi::PyCFunctionFastWithKeywords,
) -> MethodDef {
    MethodDef(UnsafeCell::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }))
}

static METHODS: [MethodDef; 4] = [
    method(
        c"call_soon",
        c"call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next iteration; callbacks run in FIFO order.",
        fastcall::<1, CallSoon>,
    ),
    method(
        c"call_soon_threadsafe",
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon, from any thread; wakes the loop if it is waiting.",
        fastcall::<1, CallSoonThreadsafe>,
    ),
    method(
        c"call_later",
        c"call_later(delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run delay seconds from now.",
        fastcall::<2, CallLater>,
    ),
    method(
        c"call_at",
        c"call_at(when, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run at loop time when.",
        fastcall::<2, CallAt>,
    ),
];

/// Adds the fast entry points to `LoopCore`'s type dict, as `PyType_Ready` does for methods
/// declared in C.
pub fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let type_ptr = ty.as_type_ptr();
    for def in &METHODS {
        // SAFETY: `def` is a static, valid method definition that outlives the type;
        // `type_ptr` is a live type object. The result is a new reference or NULL.
        let descriptor = unsafe {
            let raw = ffi::PyDescr_NewMethod(type_ptr, def.0.get());
            Bound::from_owned_ptr_or_err(py, raw)?
        };
        // SAFETY: as above; `ml_name` is a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*def.0.get()).ml_name) };
        // SAFETY: the type is fully built and no instance exists yet; writing its dict and
        // then invalidating the method cache is how CPython itself adds methods to a type.
        unsafe {
            let dict = (*type_ptr).tp_dict;
            if dict.is_null()
                || ffi::PyDict_SetItemString(dict, name.as_ptr(), descriptor.as_ptr()) < 0
            {
                return Err(PyErr::take(py).unwrap_or_else(|| {
                    PyRuntimeError::new_err("oxloop: cannot install the fast call_soon")
                }));
            }
            ffi::PyType_Modified(type_ptr);
        }
    }
    Ok(())
}
