//! Loop lag for the diagnostics mode (`oxloop.diagnostics`): switching the timer-lateness
//! histogram of a loop on and off, and reading it out (`loop.stats()["timer_lateness"]`).
//! The histogram itself is one of the loop's counters (`stats.rs`), since the loop records it.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::event_loop::LoopCore;

/// Switches lateness recording on or off for `core`'s timers (on: from an empty histogram).
#[pyfunction]
pub fn _set_timer_lag_recording(core: &Bound<'_, LoopCore>, on: bool) {
    core.get().stats().timer_lag.set_recording(on);
}

/// The lateness histogram of `core`'s timers (see `TimerLag::to_dict`).
#[pyfunction]
pub fn _timer_lag<'py>(core: &Bound<'py, LoopCore>) -> PyResult<Bound<'py, PyDict>> {
    core.get().stats().timer_lag.to_dict(core.py())
}
