//! The ready queue's entries: what `run_once` runs in its last phase, in the order it was
//! queued. A handle from `call_soon` or a due timer runs once; an fd watch, a socket wait or a
//! transport stays registered and is queued again on its next readiness event.

use std::sync::Arc;

use pyo3::prelude::*;
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

    /// The references the entry holds, for the loop's `__traverse__`. A socket wait is shared
    /// with the fd table, so it is not the queue's alone to report.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Soon(h) => h.traverse(visit),
            Ready::Timer(t) => t.traverse(visit),
            Ready::Io(h) => visit.call(h),
            Ready::Transport(t, _) => visit.call(t),
            Ready::Sock(..) => Ok(()),
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
                .map_err(|err| (err, None))
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
