"""The diagnostics' settings: what they report and where to, from arguments or the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .switch import requested_by_environment

if TYPE_CHECKING:
    from .reports import Report

__all__ = ["Settings", "resolve"]


@dataclass(frozen=True)
class Settings:
    """What the diagnostics report, and where to.

    blocking_threshold: seconds a callback or task step may run before it counts as blocking
        the loop (``OXLOOP_DIAGNOSTICS_BLOCKING``).
    task_soft_limit: live tasks above which one task-flood warning is issued
        (``OXLOOP_DIAGNOSTICS_TASK_LIMIT``).
    hook: called with every `Report` object, from the loop thread or the watchdog thread.
    jsonl_path: append every report as one JSON line to this file
        (``OXLOOP_DIAGNOSTICS_JSONL``).
    log: log every report on the ``oxloop.diagnostics`` logger (WARNING).
    opentelemetry: add span events when ``opentelemetry-api`` is importable.
    origin_depth: frames kept of where each coroutine was created (coroutine origin tracking,
        for forgotten awaits). It costs on every coroutine created, about 0.2 us at 1 frame
        and 0.5-1 us at 3; 0 switches tracking off, and a forgotten await is then reported
        where it was dropped (the same line when the call's result is simply discarded).
    summary_at_close: log a summary when the loop closes, if anything was reported.
    """

    blocking_threshold: float = 0.1
    task_soft_limit: int = 10_000
    hook: Callable[[Report], Any] | None = None
    jsonl_path: str | os.PathLike | None = None
    log: bool = True
    opentelemetry: bool = True
    origin_depth: int = 1
    summary_at_close: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.blocking_threshold) and self.blocking_threshold > 0):
            raise ValueError(
                f"blocking_threshold must be a positive number of seconds, "
                f"got {self.blocking_threshold!r}"
            )
        if self.task_soft_limit < 1:
            raise ValueError(f"task_soft_limit must be at least 1, got {self.task_soft_limit!r}")
        if self.origin_depth < 0:
            raise ValueError(f"origin_depth must be 0 or more, got {self.origin_depth!r}")
        if self.hook is not None and not callable(self.hook):
            raise TypeError(f"hook must be callable, got {self.hook!r}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, **overrides: Any):
        """Default settings, with the thresholds and file the environment sets."""
        values: dict[str, Any] = {}
        blocking = environ.get("OXLOOP_DIAGNOSTICS_BLOCKING")
        if blocking:
            values["blocking_threshold"] = float(blocking)
        limit = environ.get("OXLOOP_DIAGNOSTICS_TASK_LIMIT")
        if limit:
            values["task_soft_limit"] = int(limit)
        jsonl = environ.get("OXLOOP_DIAGNOSTICS_JSONL")
        if jsonl:
            values["jsonl_path"] = jsonl
        values.update(overrides)
        return cls(**values)


def resolve(setting: bool | Settings | None) -> Settings | None:
    """The settings a loop gets for its ``diagnostics=`` argument (None: the environment's)."""
    if setting is None:
        setting = requested_by_environment()
    if isinstance(setting, Settings):
        return setting
    if setting is True:
        return Settings.from_environment()
    if setting is False:
        return None
    raise TypeError(
        f"diagnostics must be True, False, None or an oxloop.diagnostics.Settings, got {setting!r}"
    )
