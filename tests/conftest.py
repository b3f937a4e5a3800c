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

Every loop made through these fixtures is checked when the test ends (tests/teardown_checks.py):
an exception handler call the test did not expect, a pending task, an fd, a thread or an object
left to the garbage collector fails the test at teardown. A test that expects handler calls says
so with `@pytest.mark.exception_handler_expected("why")` or by taking the `exception_contexts`
fixture (the contexts, to assert on); one that sets its own handler checks them itself.
`@pytest.mark.default_exception_handler("why")` leaves the loop's handler as it comes (for tests
of the default handler).
"""

import asyncio
import functools
import sys

import pytest
from teardown_checks import Checks
from tlshelpers import make_tls_files

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
    config.addinivalue_line(
        "markers", "exception_handler_expected(reason): the test makes its loops report errors"
    )
    config.addinivalue_line(
        "markers", "default_exception_handler(reason): no recording handler on the test's loops"
    )


def pytest_generate_tests(metafunc):
    # Every test that runs on the loops runs on asyncio and oxloop; tls_loops adds oxloop-stdlib.
    if "loop_name" in metafunc.fixturenames:
        tls = metafunc.definition.get_closest_marker("tls_loops") is not None
        names = sorted(TLS_LOOP_FACTORIES if tls else LOOP_FACTORIES)
        metafunc.parametrize("loop_name", names, indirect=True)


@pytest.fixture
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
def teardown_checks(request):
    """The checks over every loop the test makes through `loop_factory` (see the module doc)."""
    checks = Checks(
        handler_expected=request.node.get_closest_marker("exception_handler_expected") is not None,
        consumes_contexts="exception_contexts" in request.fixturenames,
        keep_handler=request.node.get_closest_marker("default_exception_handler") is not None,
    )
    yield checks
    problems = checks.finish()
    if problems:
        pytest.fail("left behind:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def exception_contexts(teardown_checks):
    """The contexts the test's loops gave their exception handler, in order: a test that takes
    this fixture expects (and asserts on) them."""
    return teardown_checks.contexts


@pytest.fixture
def loop_factory(loop_name, teardown_checks):
    make = TLS_LOOP_FACTORIES[loop_name]

    @functools.wraps(make)
    def factory(*args, **kwargs):
        return teardown_checks.adopt(make(*args, **kwargs))

    return factory


@pytest.fixture
def loop(loop_factory):
    """A fresh loop; the teardown checks close it."""
    return loop_factory()


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """Certificates for the TLS tests (a CA, a server certificate and key), made once a session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))
