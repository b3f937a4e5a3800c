//! oxloop's native core, imported as `oxloop._oxloop`: the parts of an asyncio event loop
//! that run per callback, per timer and per I/O event. The Python package `oxloop` builds the
//! public loop class on top of `LoopCore`.

mod buffer;
mod clock;
mod diagnostics;
mod errors;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod poller;
mod sock;
mod sock_wait;
mod stats;
mod stream;
mod task_book;
mod timers;
mod transport;
mod udp;
mod watchdog;

use pyo3::prelude::*;

// `gil_used`: the loop state relies on the GIL to serialise threads (see `gil_cell`).
#[pymodule(gil_used = true)]
fn _oxloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::LoopCore>()?;
    fastcall::install(&m.py().get_type::<event_loop::LoopCore>())?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transport::TransportCore>()?;
    m.add_function(wrap_pyfunction!(sock::recv_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock::recv_into_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock::send_nowait, m)?)?;
    m.add_class::<watchdog::Watchdog>()?;
    m.add_class::<task_book::TaskBook>()?;
    m.add_class::<task_book::TaskDone>()?;
    m.add_function(wrap_pyfunction!(diagnostics::_set_timer_lag_recording, m)?)?;
    m.add_function(wrap_pyfunction!(diagnostics::_timer_lag, m)?)?;
    Ok(())
}
