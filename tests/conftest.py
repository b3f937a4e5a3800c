"""Shared fixtures: every behavioural test runs on stock asyncio (the oracle) and on oxloop.

A test takes the `loop_factory` fixture (a zero-argument callable returning a new loop) or the
`loop` fixture (a fresh loop, closed after the test). The parameter id says which loop ran, so a
failure reads `test_x[oxloop]` or `test_x[asyncio]`.

Tests that only oxloop can pass are marked `@pytest.mark.oxloop_only("why")`; they run only with
the oxloop factory. `@pytest.mark.oxloop_only("why", since=(3, 12))` marks behaviour stock asyncio
had up to that Python version and dropped: the asyncio run is skipped from that version on;
`before=(3, 12)` marks behaviour stock asyncio gained in that version.
"""

import asyncio
import sys

import pytest

import oxloop

LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "oxloop": oxloop.new_event_loop,
}


def pytest_configure(config):
    config.addinivalue_line("markers", "oxloop_only(reason): behaviour stock asyncio does not have")


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_name(request):
    marker = request.node.get_closest_marker("oxloop_only")
    if marker is not None and request.param != "oxloop":
        # since=(3, 12): stock asyncio has the behaviour before that version only;
        # before=(3, 12): stock asyncio has it from that version on.
        since, before = marker.kwargs.get("since"), marker.kwargs.get("before")
        applies = (since is None or sys.version_info >= since) and (
            before is None or sys.version_info < before
        )
        if applies:
            pytest.skip("oxloop-only behaviour: " + (marker.args[0] if marker.args else ""))
    return request.param


@pytest.fixture
def loop_factory(loop_name):
    return LOOP_FACTORIES[loop_name]


@pytest.fixture
def loop(loop_factory):
    lp = loop_factory()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            if lp.is_running():
                lp.stop()
            lp.close()
        asyncio.set_event_loop(None)
