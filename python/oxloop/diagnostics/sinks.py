"""Where diagnostics reports go: the ``oxloop.diagnostics`` logger, a user hook, a JSON-lines
file, and OpenTelemetry span events when ``opentelemetry-api`` is importable.

Sinks may be called from the loop thread and from the watchdog thread (blocking reports), so
each is safe to call from any thread. A sink that raises is logged and does not stop the others.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .reports import BlockingReport, LostExceptionReport, Report

__all__ = ["logger", "Sinks"]

logger = logging.getLogger("oxloop.diagnostics")


def log_report(report: Report) -> None:
    logger.warning("%s", report.format())


class JsonLinesSink:
    """Appends one JSON object per report (``Report.to_dict()``) to a file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # closed by close()

    def __call__(self, report: Report) -> None:
        line = json.dumps(report.to_dict(), default=repr)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class OpenTelemetrySink:
    """Span events for blocking episodes (when over) and lost exceptions.

    The event goes on the current span when one is recording; otherwise (the watchdog thread
    has no current span, nor has the loop when it closes) on a short span of its own, so it is
    not lost.
    """

    def __init__(self, trace_api: Any) -> None:
        self._trace = trace_api
        self._tracer = trace_api.get_tracer("oxloop.diagnostics")

    def __call__(self, report: Report) -> None:
        if isinstance(report, BlockingReport) and report.ended:
            name = "oxloop.loop_blocked"
            attributes: dict[str, Any] = {
                "oxloop.blocked.seconds": report.seconds,
                "oxloop.blocked.by": report.what,
            }
        elif isinstance(report, LostExceptionReport):
            name = "oxloop.lost_exception"
            attributes = {
                "oxloop.task": report.task.name,
                "exception.type": type(report.exception).__qualname__,
                "exception.message": str(report.exception),
            }
        else:
            return
        attributes["oxloop.message"] = report.message
        if report.location is not None:
            attributes["code.filepath"] = report.location.filename
            attributes["code.lineno"] = report.location.lineno
            attributes["code.function"] = report.location.function
        span = self._trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)
            return
        with self._tracer.start_as_current_span(name) as own:
            own.add_event(name, attributes)


def _opentelemetry_trace() -> Any:
    """``opentelemetry.trace`` if importable, else None: the dependency is optional."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


class Sinks:
    """The sinks chosen by the settings, called in order for every report."""

    def __init__(
        self,
        *,
        log: bool,
        hook: Callable[[Report], Any] | None,
        jsonl_path: str | os.PathLike | None,
        opentelemetry: bool,
    ) -> None:
        self._sinks: list[Callable[[Report], Any]] = []
        self._jsonl: JsonLinesSink | None = None
        if log:
            self._sinks.append(log_report)
        if hook is not None:
            self._sinks.append(hook)
        if jsonl_path is not None:
            self._jsonl = JsonLinesSink(jsonl_path)
            self._sinks.append(self._jsonl)
        trace = _opentelemetry_trace() if opentelemetry else None
        self.opentelemetry = trace is not None
        if trace is not None:
            self._sinks.append(OpenTelemetrySink(trace))

    def emit(self, report: Report) -> None:
        for sink in self._sinks:
            try:
                sink(report)
            except Exception:
                logger.exception("oxloop diagnostics: the sink %r failed on a report", sink)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
