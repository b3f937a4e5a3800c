//! Futures and tasks the loop makes: `create_future`, `create_task` and the task factory.
//! The futures and tasks are asyncio's own (`asyncio.Future`, `asyncio.Task`), so everything
//! that inspects them behaves as on stock asyncio.
//!
//! Rust because a task or a future is made per operation: the calls go through vectorcall with
//! interned keyword names, without building a keyword dict.

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::gil_cell::GilCell;

/// The loop's task factory (`set_task_factory`), None for asyncio's default.
pub struct TaskFactory(GilCell<Option<Py<PyAny>>>);

impl TaskFactory {
    pub const fn new() -> Self {
        Self(GilCell::new(None))
    }

    pub fn get(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.0.with(py, |f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    pub fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self.0.peek().as_deref() {
            Some(Some(factory)) => visit.call(factory),
            _ => Ok(()),
        }
    }

    /// `factory(loop, coro[, context=ctx])` from now on, or None for the default.
    pub fn set(&self, py: Python<'_>, factory: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(f) = &factory
            && !f.bind(py).is_callable()
        {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let previous = self.0.with(py, |f| std::mem::replace(f, factory))?;
        drop(previous); // outside the borrow: releasing may run `__del__`
        Ok(())
    }
}

/// Calls `callable(*args, **dict(zip(kwnames, kwargs)))` through vectorcall, without building
/// a dict: `asyncio.Task(coro, loop=..., ...)` and `asyncio.Future(loop=...)` on every task
/// and future the loop makes.
fn vectorcall_kw<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: &Bound<'py, PyTuple>,
    kwargs: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    debug_assert_eq!(kwnames.len(), kwargs.len());
    let stack: Vec<*mut pyo3::ffi::PyObject> =
        args.iter().chain(kwargs).map(|obj| obj.as_ptr()).collect();
    // SAFETY: GIL held; `stack` holds borrowed pointers kept alive by `args`/`kwargs` for the
    // call, its length is positional + keyword count, and `kwnames` is a tuple of str.
    unsafe {
        let result = pyo3::ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            stack.as_ptr(),
            args.len(),
            kwnames.as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, result)
    }
}

fn interned_names<'py>(
    cell: &'static PyOnceLock<Py<PyTuple>>,
    py: Python<'py>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    cell.get_or_try_init(py, || {
        let names = names.iter().map(|n| PyString::intern(py, n));
        PyTuple::new(py, names).map(Bound::unbind)
    })
    .map(|names| names.bind(py))
}

/// A new `asyncio.Future` attached to `event_loop`.
pub fn create_future<'py>(event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = event_loop.py();
    let future = FUTURE.import(py, "asyncio", "Future")?;
    let kwnames = interned_names(&KWNAMES, py, &["loop"])?;
    vectorcall_kw(future, &[], kwnames, &[event_loop])
}

/// `loop.create_task(coro, name=..., context=..., **kwargs)`: an `asyncio.Task` of
/// `event_loop`, or what `factory` makes, with each Python version's semantics.
///
/// Keyword arguments beyond `name` and `context` (3.13+: `eager_start`, or whatever a task
/// factory takes) go to the task or the factory, as on asyncio; before 3.13 asyncio's
/// `create_task` has no such arguments, and neither has this one there.
pub fn create_task<'py>(
    event_loop: &Bound<'py, PyAny>,
    factory: Option<Py<PyAny>>,
    coro: &Bound<'py, PyAny>,
    name: Option<&Bound<'py, PyAny>>,
    context: Option<&Bound<'py, PyAny>>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    static CONTEXT_KW: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = event_loop.py();
    let extra = kwargs.filter(|k| !k.is_empty());
    if let Some(extra) = extra
        && crate::version::python(py) < (3, 13)
    {
        let first = extra.keys().get_item(0)?;
        return Err(PyTypeError::new_err(format!(
            "create_task() got an unexpected keyword argument '{first}'"
        )));
    }
    let Some(factory) = factory else {
        let task = TASK.import(py, "asyncio", "Task")?;
        let none = py.None().into_bound(py);
        let (name, context) = (name.unwrap_or(&none), context.unwrap_or(&none));
        let Some(extra) = extra else {
            let kwnames = interned_names(&KWNAMES, py, &["loop", "name", "context"])?;
            return vectorcall_kw(task, &[coro], kwnames, &[event_loop, name, context]);
        };
        let all = extra.copy()?;
        all.set_item(intern!(py, "loop"), event_loop)?;
        all.set_item(intern!(py, "name"), name)?;
        all.set_item(intern!(py, "context"), context)?;
        return task.call((coro,), Some(&all));
    };
    let factory = factory.bind(py);
    if crate::version::python(py) >= (3, 14) {
        // 3.14 hands the factory every keyword as given, the name included.
        let all = extra.map_or_else(|| Ok(PyDict::new(py)), |e| e.copy())?;
        if let Some(name) = name {
            all.set_item(intern!(py, "name"), name)?;
        }
        if let Some(context) = context {
            all.set_item(intern!(py, "context"), context)?;
        }
        return factory.call((event_loop, coro), Some(&all));
    }
    let context = context.filter(|c| !c.is_none());
    let task = match (context, extra) {
        (None, None) => factory.call1((event_loop, coro))?,
        (Some(context), None) => {
            let kwnames = interned_names(&CONTEXT_KW, py, &["context"])?;
            vectorcall_kw(factory, &[event_loop, coro], kwnames, &[context])?
        }
        (context, Some(extra)) => {
            let all = extra.copy()?;
            if let Some(context) = context {
                all.set_item(intern!(py, "context"), context)?;
            }
            factory.call((event_loop, coro), Some(&all))?
        }
    };
    // DEVIATION: 3.13 calls `task.set_name(name)` even when no name was given, which names every
    // task of a custom factory "None"; a task without a name keeps its own here.
    if let Some(name) = name.filter(|n| !n.is_none()) {
        match task.call_method1(intern!(py, "set_name"), (name,)) {
            Err(err) if err.is_instance_of::<PyAttributeError>(py) => {}
            other => {
                other?;
            }
        }
    }
    Ok(task)
}
