//! oxloop's native core, imported as `oxloop._oxloop`: the parts of an asyncio event loop
//! that run per callback, per timer and per I/O event. The Python package `oxloop` builds the
//! public loop class on top of `LoopCore`.
//!
//! Modules, from the loop down (a module uses only modules listed after it, which
//! `tests/test_layout.py` checks):
//! - `fastcall`: the C entry points of `call_soon` & co.;
//! - `diagnostics`: watchdog, task book, timer-lag read-out (observe the loop, off by default);
//! - `event_loop`: `LoopCore`, `run_once`, the Python-visible loop methods;
//! - `ready`: the ready queue's entries and how each runs;
//! - `tasks`: futures, tasks, the task factory;
//! - `transport`: socket transports (`stream`, `datagram`);
//! - `io_table`: the fd table, the only user of the poller;
//! - `sock_ops`: the `sock_*` first attempts and waits;
//! - `handles`, `timers`: callbacks and the timer heap;
//! - `poller`, `socket_io`, `buffer`, `stats`, `clock`, `errors`, `gil_cell`: the ground floor.

mod buffer;
mod clock;
mod diagnostics;
mod errors;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod io_table;
mod loop_sock;
mod poller;
mod ready;
mod sock_ops;
mod socket_io;
mod stats;
mod tasks;
mod timers;
mod transport;
mod version;

use pyo3::prelude::*;

use diagnostics::{task_book, timer_lag, watchdog};

// `gil_used`: the loop state relies on the GIL to serialise threads (see `gil_cell`).
#[pymodule(gil_used = true)]
fn _oxloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::LoopCore>()?;
    fastcall::install(&m.py().get_type::<event_loop::LoopCore>())?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transport::TransportCore>()?;
    m.add_class::<transport::tls::TlsLayer>()?;
    m.add_function(wrap_pyfunction!(sock_ops::recv_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::recv_into_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::send_nowait, m)?)?;
    m.add_class::<watchdog::Watchdog>()?;
    m.add_class::<task_book::TaskBook>()?;
    m.add_class::<task_book::TaskDone>()?;
    m.add_function(wrap_pyfunction!(timer_lag::_set_timer_lag_recording, m)?)?;
    m.add_function(wrap_pyfunction!(timer_lag::_timer_lag, m)?)?;
    Ok(())
}
