//! Write flow control, as asyncio's `FlowControlMixin`: the protocol is paused when the write
//! buffer grows past the high-water mark and resumed when it drains to the low-water mark.
//! Shared by both kinds of transport.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{TransportCore, is_fatal_interrupt};

pub(super) const DEFAULT_HIGH_WATER: usize = 64 * 1024;

impl TransportCore {
    /// asyncio's `_maybe_pause_protocol`.
    pub(crate) fn maybe_pause_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let pause = self.with(py, |s| {
            let pause = s.buffered > s.high_water && !s.protocol_paused;
            if pause {
                s.protocol_paused = true;
            }
            pause
        })?;
        if pause {
            let result = self.call_protocol(py, intern!(py, "pause_writing"), ());
            self.report_flow_control_error(py, result, "protocol.pause_writing() failed")?;
        }
        Ok(())
    }

    /// asyncio's `_maybe_resume_protocol`.
    pub(crate) fn maybe_resume_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let resume = self.with(py, |s| {
            let resume = s.protocol_paused && s.buffered <= s.low_water;
            if resume {
                s.protocol_paused = false;
            }
            resume
        })?;
        if resume {
            let result = self.call_protocol(py, intern!(py, "resume_writing"), ());
            self.report_flow_control_error(py, result, "protocol.resume_writing() failed")?;
        }
        Ok(())
    }

    fn report_flow_control_error(
        &self,
        py: Python<'_>,
        result: PyResult<Bound<'_, PyAny>>,
        message: &str,
    ) -> PyResult<()> {
        let Err(err) = result else {
            return Ok(());
        };
        if is_fatal_interrupt(py, &err) {
            return Err(err);
        }
        let (event_loop, transport, protocol) = self.with(py, |s| {
            (
                s.event_loop.as_ref().map(|l| l.clone_ref(py)),
                s.transport.as_ref().map(|t| t.clone_ref(py)),
                s.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        })?;
        let Some(event_loop) = event_loop else {
            return Ok(());
        };
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", transport)?;
        context.set_item("protocol", protocol)?;
        event_loop
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))
            .map(drop)
    }
}

/// asyncio's `_set_write_buffer_limits`: (high, low) from what the user gave.
pub(super) fn write_buffer_limits(
    high: Option<isize>,
    low: Option<isize>,
) -> PyResult<(usize, usize)> {
    let high = match (high, low) {
        (Some(high), _) => high,
        (None, None) => DEFAULT_HIGH_WATER as isize,
        (None, Some(low)) => low.saturating_mul(4),
    };
    let low = low.unwrap_or(high / 4);
    if !(high >= low && low >= 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "high ({high}) must be >= low ({low}) must be >= 0"
        )));
    }
    Ok((high as usize, low as usize))
}
