"""Whether the environment switches diagnostics on: the one part of them every loop consults."""

import os


def requested_by_environment() -> bool:
    """``OXLOOP_DIAGNOSTICS`` set to anything but '', 0, false, no or off."""
    value = os.environ.get("OXLOOP_DIAGNOSTICS", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")
