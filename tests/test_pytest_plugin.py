"""The pytest plugin (python/oxloop/pytest.py), run on small test suites through pytester.

Each suite's tests print the class of the loop they ran on (``LOOP <module> <test id>``), so the
checks read which loop every test got. Not parametrised over loops: choosing the loop is the
plugin's job. Each suite runs in-process (pytester's inline run: a new pytest configuration,
which loads the installed plugins by their entry points as a user's `pytest` does).
"""

import os
import re
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]
pytest.importorskip("pytest_asyncio")
pytest.importorskip("anyio")

PRINT_LOOP = """
import asyncio, os

def report(request):
    loop = type(asyncio.get_running_loop()).__module__
    print(f"LOOP {loop} {request.node.name}")
"""

PYTEST_ASYNCIO_SUITE = (
    PRINT_LOOP
    + """
import pytest

@pytest.mark.asyncio
async def test_one(request):
    report(request)
"""
)

ANYIO_SUITE = (
    PRINT_LOOP
    + """
import pytest

@pytest.fixture
async def loop_of_fixture():
    return type(asyncio.get_running_loop()).__module__

@pytest.mark.anyio
async def test_one(request, loop_of_fixture):
    assert loop_of_fixture == type(asyncio.get_running_loop()).__module__
    report(request)
"""
)


def loops_seen(result) -> dict[str, str]:
    """{test name: module of the loop it ran on}, from the suite's output."""
    return {test: loop for loop, test in re.findall(r"LOOP (\S+) (\S+)", result.stdout.str())}


def run(pytester, suite, *args, ini=""):
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    return loops_seen(result)


def test_off_unless_asked(pytester):
    assert run(pytester, PYTEST_ASYNCIO_SUITE) == {"test_one": "asyncio.unix_events"}


def test_dash_p_runs_pytest_asyncio_tests_on_oxloop(pytester):
    assert run(pytester, PYTEST_ASYNCIO_SUITE, "-p", "oxloop.pytest") == {"test_one": "oxloop.loop"}


def test_ini_option(pytester):
    seen = run(pytester, PYTEST_ASYNCIO_SUITE, ini="oxloop = true")
    assert seen == {"test_one": "oxloop.loop"}


def test_command_line_overrides_ini(pytester):
    seen = run(pytester, PYTEST_ASYNCIO_SUITE, "--oxloop=false", ini="oxloop = true")
    assert seen == {"test_one": "asyncio.unix_events"}


def test_both_runs_each_pytest_asyncio_test_on_each_loop(pytester):
    assert run(pytester, PYTEST_ASYNCIO_SUITE, "--oxloop=both") == {
        "test_one[asyncio]": "asyncio.unix_events",
        "test_one[oxloop]": "oxloop.loop",
    }


def test_the_projects_own_loop_factories_hook_wins(pytester):
    pytester.makeconftest(
        """
import asyncio

def pytest_asyncio_loop_factories(config, item):
    return {"mine": asyncio.SelectorEventLoop}
"""
    )
    seen = run(pytester, PYTEST_ASYNCIO_SUITE, "-p", "oxloop.pytest")
    assert seen == {"test_one": "asyncio.unix_events"}


def test_anyio_tests_and_async_fixtures_run_on_oxloop(pytester):
    assert run(pytester, ANYIO_SUITE, "-p", "oxloop.pytest") == {"test_one[asyncio]": "oxloop.loop"}


def test_anyio_both(pytester):
    assert run(pytester, ANYIO_SUITE, "--oxloop=both") == {
        "test_one[asyncio-asyncio]": "asyncio.unix_events",
        "test_one[asyncio-oxloop]": "oxloop.loop",
    }


def test_the_projects_own_anyio_backend_is_kept_and_given_oxloop(pytester):
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"debug": True})
"""
    )
    suite = (
        ANYIO_SUITE
        + "\n\ndef test_debug_kept(anyio_backend):\n    assert anyio_backend[1]['debug']\n"
    )
    assert run(pytester, suite, "-p", "oxloop.pytest") == {"test_one": "oxloop.loop"}


def test_a_bad_ini_value_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\noxloop = maybe\n")
    pytester.makepyfile(test_suite=PYTEST_ASYNCIO_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "oxloop: ini option must be one of" in result.stderr.str()


# --- pytest-asyncio before 1.4: loops come from its event_loop_policy fixture -------------------

OLD_PYTEST_ASYNCIO = "pytest-asyncio==1.3.0"  # the last release without loop factories


@pytest.fixture(scope="session")
def old_pytest_asyncio(tmp_path_factory):
    """A directory holding pytest-asyncio 1.3, installed from the package index for this run; put
    first on PYTHONPATH, it shadows the installed (newer) one in a pytest subprocess."""
    target = tmp_path_factory.mktemp("old-pytest-asyncio")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target]
        + [OLD_PYTEST_ASYNCIO],
        check=True,
        timeout=120,
    )
    return target


def run_on_old_pytest_asyncio(pytester, monkeypatch, directory, *args):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), *sys.path]))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_suite=PYTEST_ASYNCIO_SUITE + "\n" + REPORT_PYTEST_ASYNCIO_VERSION)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "PYTEST_ASYNCIO 1.3.0" in result.stdout.str()  # the old one really ran
    return loops_seen(result)


REPORT_PYTEST_ASYNCIO_VERSION = """
def test_version():
    import pytest_asyncio
    print("PYTEST_ASYNCIO", pytest_asyncio.__version__)
"""


def test_old_pytest_asyncio_runs_on_oxloop(pytester, monkeypatch, old_pytest_asyncio):
    seen = run_on_old_pytest_asyncio(
        pytester, monkeypatch, old_pytest_asyncio, "-p", "oxloop.pytest"
    )
    assert seen == {"test_one": "oxloop.loop"}


def test_old_pytest_asyncio_both(pytester, monkeypatch, old_pytest_asyncio):
    seen = run_on_old_pytest_asyncio(pytester, monkeypatch, old_pytest_asyncio, "--oxloop=both")
    assert seen == {"test_one[asyncio]": "asyncio.unix_events", "test_one[oxloop]": "oxloop.loop"}


def test_old_pytest_asyncio_projects_own_policy_wins(pytester, monkeypatch, old_pytest_asyncio):
    pytester.makeconftest(
        """
import asyncio, pytest

@pytest.fixture(scope="session")
def event_loop_policy():
    return asyncio.DefaultEventLoopPolicy()
"""
    )
    seen = run_on_old_pytest_asyncio(
        pytester, monkeypatch, old_pytest_asyncio, "-p", "oxloop.pytest"
    )
    assert seen == {"test_one": "asyncio.unix_events"}
