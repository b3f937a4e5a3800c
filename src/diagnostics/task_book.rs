//! Per-task bookkeeping of the diagnostics mode: `TaskBook` is the loop's task factory while
//! diagnostics are on, and `TaskDone` the done callback it gives every task it makes.
//! `oxloop._task_guard.TaskGuard` owns both and turns what they count into reports.
//!
//! Rust because it runs twice per task (at creation and when the task is done): written in
//! Python, the same bookkeeping nearly doubled the cost of a short task. What is rare stays in
//! Python: the flood report, and a finished task that was cancelled or failed is handed to
//! the guard's Python callback.
//!
//! Per task: the task object (the guard's `Task` subclass of `asyncio.Task`), its creation
//! site (the innermost frame outside asyncio and oxloop, as a `(filename, lineno, qualname)`
//! tuple shared by every task of that site), counts of created, live and high-water tasks, live
//! tasks per site (in a dict the guard reads), and the creation rate.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::clock;
use crate::gil_cell::GilCell;

/// The rate window is looked at every this many tasks, not on every one.
const RATE_CHECK_EVERY: u64 = 64;
/// Frames walked at most to find a creation site (deeper machinery counts as no site).
const MAX_SITE_DEPTH: usize = 64;

/// What is known about one code object met while looking for creation sites.
struct CodeInfo {
    /// Kept so that the address used as the key cannot be reused by another code object.
    _code: Py<PyAny>,
    filename: Py<PyAny>,
    qualname: Py<PyAny>,
    machinery: bool,
}

struct BookState {
    created: u64,
    live: u64,
    high_water: u64,
    flood_armed: bool,
    rate_start: f64,
    rate_created: u64,
    last_rate: f64,
    codes: HashMap<usize, CodeInfo>,
    /// (code address, line) -> the site tuple every task of that site shares.
    site_tuples: HashMap<(usize, i32), Py<PyTuple>>,
}

/// State shared by the factory and the done callback.
struct Book {
    soft_limit: u64,
    state: GilCell<BookState>,
}

impl Book {
    fn check_rate(&self, state: &mut BookState) {
        let now = clock::monotonic();
        let elapsed = now - state.rate_start;
        if elapsed >= 1.0 {
            state.last_rate = (state.created - state.rate_created) as f64 / elapsed;
            state.rate_start = now;
            state.rate_created = state.created;
        }
    }
}

/// The task factory of a diagnosed loop: `book(loop, coro, **kwargs)` makes the task.
#[pyclass(frozen, module = "oxloop._oxloop")]
pub struct TaskBook {
    book: Arc<Book>,
    task_class: Py<PyAny>,
    /// Live tasks per site (`site tuple or None -> count`), owned by the Python guard.
    sites: Py<PyDict>,
    /// Path prefixes of asyncio's and oxloop's own code: frames there are not creation sites.
    machinery: Vec<String>,
    on_flood: Py<PyAny>,
    done: Py<TaskDone>,
    /// `{"context": empty Context}`: done callbacks run in it (one context copy less per task).
    done_kwargs: Py<PyDict>,
}

/// The done callback of the tasks a `TaskBook` made.
#[pyclass(frozen, module = "oxloop._oxloop")]
pub struct TaskDone {
    book: Arc<Book>,
    sites: Py<PyDict>,
    /// Called with a finished task that was cancelled or failed: the guard's reports.
    on_unusual_end: Py<PyAny>,
}

#[pymethods]
impl TaskBook {
    #[new]
    fn new(
        py: Python<'_>,
        task_class: Py<PyAny>,
        soft_limit: u64,
        sites: Py<PyDict>,
        machinery: Vec<String>,
        on_flood: Py<PyAny>,
        on_unusual_end: Py<PyAny>,
    ) -> PyResult<Self> {
        let book = Arc::new(Book {
            soft_limit,
            state: GilCell::new(BookState {
                created: 0,
                live: 0,
                high_water: 0,
                flood_armed: true,
                rate_start: clock::monotonic(),
                rate_created: 0,
                last_rate: 0.0,
                codes: HashMap::new(),
                site_tuples: HashMap::new(),
            }),
        });
        let done = Py::new(
            py,
            TaskDone {
                book: Arc::clone(&book),
                sites: sites.clone_ref(py),
                on_unusual_end,
            },
        )?;
        let done_kwargs = PyDict::new(py);
        let context = py.import("contextvars")?.getattr("Context")?.call0()?;
        done_kwargs.set_item("context", context)?;
        Ok(Self {
            book,
            task_class,
            sites,
            machinery,
            on_flood,
            done,
            done_kwargs: done_kwargs.unbind(),
        })
    }

    #[pyo3(signature = (event_loop, coro, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        event_loop: &Bound<'py, PyAny>,
        coro: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = match kwargs {
            Some(kwargs) => kwargs.copy()?,
            None => PyDict::new(py),
        };
        kwargs.set_item(intern!(py, "loop"), event_loop)?;
        let task = self.task_class.bind(py).call((coro,), Some(&kwargs))?;
        let site = self.creation_site(py)?;
        task.setattr(intern!(py, "_oxloop_site"), &site)?;
        task.setattr(intern!(py, "_oxloop_cancel_stack"), py.None())?;
        task.setattr(intern!(py, "_oxloop_at_shutdown"), false)?;
        task.setattr(intern!(py, "_oxloop_reported"), false)?;
        task.call_method(
            intern!(py, "add_done_callback"),
            (self.done.bind(py),),
            Some(self.done_kwargs.bind(py)),
        )?;
        let sites = self.sites.bind(py);
        let count: u64 = match sites.get_item(&site)? {
            Some(count) => count.extract()?,
            None => 0,
        };
        sites.set_item(&site, count + 1)?;
        let flood = self.book.state.with(py, |s| {
            s.created += 1;
            s.live += 1;
            let mut flood = false;
            if s.live > s.high_water {
                s.high_water = s.live;
                if s.live > self.book.soft_limit && s.flood_armed {
                    s.flood_armed = false;
                    flood = true;
                }
            }
            if s.created % RATE_CHECK_EVERY == 0 {
                self.book.check_rate(s);
            }
            flood
        })?;
        if flood {
            self.on_flood.bind(py).call0()?;
        }
        Ok(task)
    }

    #[getter]
    fn created(&self, py: Python<'_>) -> PyResult<u64> {
        self.book.state.with(py, |s| s.created)
    }

    #[getter]
    fn live(&self, py: Python<'_>) -> PyResult<u64> {
        self.book.state.with(py, |s| s.live)
    }

    #[getter]
    fn high_water(&self, py: Python<'_>) -> PyResult<u64> {
        self.book.state.with(py, |s| s.high_water)
    }

    /// Tasks created per second over the last second or so.
    fn rate(&self, py: Python<'_>) -> PyResult<f64> {
        self.book.state.with(py, |s| {
            let elapsed = clock::monotonic() - s.rate_start;
            if elapsed < 0.1 && s.last_rate > 0.0 {
                return s.last_rate; // too short a window: the previous one's rate
            }
            (s.created - s.rate_created) as f64 / elapsed.max(1e-3)
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.task_class)?;
        visit.call(&self.sites)?;
        visit.call(&self.on_flood)?;
        visit.call(&self.done)?;
        visit.call(&self.done_kwargs)?;
        Ok(())
    }
}

impl TaskBook {
    /// The `(filename, lineno, qualname)` of the innermost frame outside asyncio and oxloop,
    /// or None.
    fn creation_site<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: GIL held. PyEval_GetFrame returns a borrowed reference (or NULL), which we
        // turn into an owned one; PyFrame_GetBack and PyFrame_GetCode return new references.
        let mut frame = unsafe {
            let current = ffi::PyEval_GetFrame();
            Bound::from_borrowed_ptr_or_opt(py, current.cast())
        };
        let mut depth = 0;
        while let Some(current) = frame {
            if depth == MAX_SITE_DEPTH {
                break;
            }
            depth += 1;
            let frame_ptr = current.as_ptr().cast::<ffi::PyFrameObject>();
            // SAFETY: `frame_ptr` is a live frame (owned by `current`).
            let code = unsafe {
                Bound::from_owned_ptr_or_err(py, ffi::PyFrame_GetCode(frame_ptr).cast())?
            };
            let key = code.as_ptr() as usize;
            let machinery = self
                .book
                .state
                .with(py, |s| s.codes.get(&key).map(|info| info.machinery))?;
            let machinery = match machinery {
                Some(machinery) => machinery,
                None => self.learn_code(py, &code)?,
            };
            if !machinery {
                // SAFETY: as above.
                let line = unsafe { ffi::PyFrame_GetLineNumber(frame_ptr) };
                return self.site_tuple(py, key, line).map(Bound::into_any);
            }
            // SAFETY: as above; NULL (no outer frame) ends the walk.
            frame =
                unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetBack(frame_ptr).cast()) };
        }
        Ok(py.None().into_bound(py))
    }

    fn learn_code(&self, py: Python<'_>, code: &Bound<'_, PyAny>) -> PyResult<bool> {
        let filename = code.getattr(intern!(py, "co_filename"))?;
        let qualname = code.getattr(intern!(py, "co_qualname"))?;
        let path: String = filename.extract()?;
        let machinery = self.machinery.iter().any(|prefix| path.starts_with(prefix));
        let info = CodeInfo {
            _code: code.clone().unbind(),
            filename: filename.unbind(),
            qualname: qualname.unbind(),
            machinery,
        };
        let replaced = self
            .book
            .state
            .with(py, |s| s.codes.insert(code.as_ptr() as usize, info))?;
        drop(replaced); // outside the borrow (see gil_cell)
        Ok(machinery)
    }

    fn site_tuple<'py>(
        &self,
        py: Python<'py>,
        code: usize,
        line: i32,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let known = self.book.state.with(py, |s| {
            s.site_tuples.get(&(code, line)).map(|t| t.clone_ref(py))
        })?;
        if let Some(site) = known {
            return Ok(site.into_bound(py));
        }
        let parts = self.book.state.with(py, |s| {
            s.codes
                .get(&code)
                .map(|info| (info.filename.clone_ref(py), info.qualname.clone_ref(py)))
        })?;
        let Some((filename, qualname)) = parts else {
            return Err(PyRuntimeError::new_err(
                "oxloop internal error: creation site of an unknown code object",
            ));
        };
        let site = PyTuple::new(
            py,
            [
                filename,
                line.into_pyobject(py)?.into_any().unbind(),
                qualname,
            ],
        )?;
        let kept = site.clone().unbind();
        let replaced = self
            .book
            .state
            .with(py, |s| s.site_tuples.insert((code, line), kept))?;
        drop(replaced); // outside the borrow (see gil_cell)
        Ok(site)
    }
}

#[pymethods]
impl TaskDone {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let site = task.getattr(intern!(py, "_oxloop_site"))?;
        let sites = self.sites.bind(py);
        if let Some(count) = sites.get_item(&site)? {
            let left = count.extract::<u64>()?.saturating_sub(1);
            if left > 0 {
                sites.set_item(&site, left)?;
            } else {
                sites.del_item(&site)?;
            }
        }
        self.book.state.with(py, |s| {
            s.live = s.live.saturating_sub(1);
            if !s.flood_armed && s.live < self.book.soft_limit / 2 {
                s.flood_armed = true;
            }
        })?;
        // A task cancel() was called on has a cancel stack (the guard's Task.cancel sets it);
        // a failed one has its exception (reading `_exception` does not mark it retrieved).
        let unusual = !task.getattr(intern!(py, "_oxloop_cancel_stack"))?.is_none()
            || !task.getattr(intern!(py, "_exception"))?.is_none();
        if unusual {
            self.on_unusual_end.bind(py).call1((task,))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sites)?;
        visit.call(&self.on_unusual_end)?;
        Ok(())
    }
}
