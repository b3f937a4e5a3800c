"""Shared fixtures: every behavioural test runs on stock asyncio (the oracle) and on oxloop.

A test takes the `loop_factory` fixture (a zero-argument callable returning a new loop) or the
`loop` fixture (a fresh loop, closed after the test). The parameter id says which loop ran, so a
failure reads `test_x[oxloop]` or `test_x[asyncio]`.

Tests that only oxloop can pass are marked `@pytest.mark.oxloop_only("why")`; they run only with
the oxloop factory. `@pytest.mark.oxloop_only("why", since=(3, 12))` marks behaviour stock asyncio
had up to that Python version and dropped: the asyncio run is skipped from that version on;
`before=(3, 12)` marks behaviour stock asyncio gained in that version.

A module or test marked `@pytest.mark.tls_loops` runs on a third loop too, `oxloop-stdlib`:
oxloop with asyncio's own TLS protocol (`OXLOOP_TLS=stdlib`) instead of its Rust TLS layer, so
the TLS tests check both of oxloop's TLS paths against stock asyncio.
"""

import asyncio
import sys

import pytest

import oxloop

LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "oxloop": oxloop.new_event_loop,
}


def _oxloop_with_stdlib_tls():
    loop = oxloop.new_event_loop()
    loop.tls_implementation = "stdlib"
    return loop


# The loops of tests marked tls_loops (see the module doc).
TLS_LOOP_FACTORIES = {**LOOP_FACTORIES, "oxloop-stdlib": _oxloop_with_stdlib_tls}


def pytest_configure(config):
    config.addinivalue_line("markers", "oxloop_only(reason): behaviour stock asyncio does not have")
    config.addinivalue_line("markers", "tls_loops: also run on oxloop with asyncio's TLS protocol")


def pytest_collection_modifyitems(config, items):
    # The oxloop-stdlib variant is kept only for tests marked tls_loops.
    extra = [
        item
        for item in items
        if getattr(item, "callspec", None) is not None
        and item.callspec.params.get("loop_name") == "oxloop-stdlib"
        and item.get_closest_marker("tls_loops") is None
    ]
    if extra:
        dropped = set(map(id, extra))
        items[:] = [item for item in items if id(item) not in dropped]
        config.hook.pytest_deselected(items=extra)


@pytest.fixture(params=sorted(TLS_LOOP_FACTORIES))
def loop_name(request):
    marker = request.node.get_closest_marker("oxloop_only")
    if marker is not None and not request.param.startswith("oxloop"):
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
    return TLS_LOOP_FACTORIES[loop_name]


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
