//! The ready queue's entries: what `run_once` runs in its last phase, in the order it was
//! queued. A handle from `call_soon` or a due timer runs once; an fd watch, a socket wait or a
//! transport stays registered and is queued again on its next readiness event.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::handles::{CallbackSlot, FailedCallback, Handle, LoopHeld, TimerHandle};
use crate::io_table::{IoEvent, IoTarget, Side};
use crate::sock_ops::SockWait;
use crate::transport::{TransportCore, TransportIo};

/// A callback waiting in the ready queue.
pub enum Ready {
    /// From `call_soon`: runs once.
    Soon(LoopHeld<Handle>),
    /// A due timer: runs once.
    Timer(LoopHeld<TimerHandle>),
    /// A reader or writer whose fd is ready: stays registered, runs on every event.
    Io(Py<Handle>),
    /// A `sock_recv`/`sock_sendall` wait whose fd is ready: retries until it completes.
    Sock(Arc<SockWait>, Side),
    /// A transport whose socket is ready for reading or writing.
    Transport(Py<TransportCore>, Side),
}

impl Ready {
    /// The callback slot of a handle; None for a transport.
    #[inline]
    pub fn slot(&self) -> Option<&CallbackSlot> {
        match self {
            Ready::Soon(h) => Some(&h.get().slot),
            Ready::Io(h) => Some(&h.get().slot),
            Ready::Timer(t) => Some(&t.get().slot),
            Ready::Transport(..) | Ready::Sock(..) => None,
        }
    }

    pub fn to_object(&self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Ready::Soon(h) => h.object(py).into_any(),
            Ready::Io(h) => h.clone_ref(py).into_any(),
            Ready::Timer(t) => t.object(py).into_any(),
            Ready::Transport(t, _) => t.clone_ref(py).into_any(),
            Ready::Sock(wait, _) => wait.future().clone_ref(py),
        }
    }

    /// What the cycle collector sees through this entry (the loop's `__traverse__`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Soon(h) => h.traverse(visit),
            Ready::Timer(t) => t.traverse(visit),
            Ready::Io(h) => visit.call(h),
            Ready::Sock(wait, _) => wait.traverse(visit),
            Ready::Transport(t, _) => visit.call(t),
        }
    }

    /// The loop stopped running: the entry's handle goes back under the cycle collector.
    pub fn track(&self, py: Python<'_>) {
        match self {
            Ready::Soon(h) => h.track(py),
            Ready::Timer(t) => t.track(py),
            Ready::Io(_) | Ready::Sock(..) | Ready::Transport(..) => {}
        }
    }

    /// The loop is done with this entry.
    #[inline]
    pub fn release(self, py: Python<'_>) {
        match self {
            Ready::Soon(h) => h.release(py),
            Ready::Timer(t) => t.release(py),
            Ready::Io(_) | Ready::Sock(..) | Ready::Transport(..) => {}
        }
    }

    /// Runs the callback; on failure returns the error with the callback that raised it.
    #[inline]
    pub fn run(
        &self,
        io: &TransportIo,
        py: Python<'_>,
    ) -> Result<(), (PyErr, Option<FailedCallback>)> {
        match self {
            Ready::Sock(wait, side) => io.run_sock_wait(py, wait, *side).map_err(|err| (err, None)),
            Ready::Io(h) => h.get().slot.run_again(py).map_err(|err| (err, None)),
            Ready::Soon(h) => h.get().slot.run_once(py).map_err(|(e, cb)| (e, Some(cb))),
            Ready::Timer(t) => t.get().slot.run_once(py).map_err(|(e, cb)| (e, Some(cb))),
            Ready::Transport(t, side) => {
                let t = t.bind(py);
                match side {
                    Side::Read => TransportCore::on_readable(t),
                    Side::Write => TransportCore::on_writable(t),
                }
                .map_err(|err| (err, transport_callback(t, *side)))
            }
        }
    }

    /// The entry for what a ready fd asks to run.
    pub fn from_io(py: Python<'_>, event: IoEvent<'_, TransportCore>) -> Self {
        match event {
            IoEvent::Target(IoTarget::Callback(handle), _) => Ready::Io(handle.object(py)),
            IoEvent::Target(IoTarget::Sock(wait), side) => Ready::Sock(Arc::clone(wait), side),
            IoEvent::Owner(transport, side) => Ready::Transport(transport.clone_ref(py), side),
        }
    }
}

/// The Python transport's `_read_ready`/`_write_ready` for an error that escaped a transport's
/// I/O path: the loop reports it as asyncio reports its transport's reader or writer handle.
/// None once the transport is gone (the core's own report then names the core).
fn transport_callback(t: &Bound<'_, TransportCore>, side: Side) -> Option<FailedCallback> {
    let py = t.py();
    let name = match side {
        Side::Read => intern!(py, "_read_ready"),
        Side::Write => intern!(py, "_write_ready"),
    };
    let method = t
        .getattr(intern!(py, "_transport"))
        .ok()?
        .getattr(name)
        .ok()?;
    Some((method.unbind(), PyTuple::empty(py).unbind()))
}
