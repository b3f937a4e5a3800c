"""A pytest plugin that runs a project's async tests on oxloop: the quickest way to find out
whether oxloop can be trusted with your code.

Installed with the package (entry point ``pytest11``) and off until asked for::

    pytest -p oxloop.pytest            # pytest-asyncio's and anyio's async tests on oxloop
    pytest --oxloop=both               # each of them twice: stock asyncio, then oxloop

or in the configuration file (``oxloop = true``, ``both`` or ``false``; ``--oxloop`` wins)::

    [tool.pytest.ini_options]
    oxloop = "both"

What it reaches:

- pytest-asyncio 1.4 and later: through its ``pytest_asyncio_loop_factories`` hook, so each
  test's loop comes from ``oxloop.new_event_loop`` (``both``: a test ``[asyncio]`` on asyncio's
  `SelectorEventLoop` and a test ``[oxloop]``). A ``pytest_asyncio_loop_factories`` of the
  project's own (in a conftest) runs first and wins.
- anyio's plugin: a test (or async fixture) whose ``anyio_backend`` is ``asyncio`` gets
  ``loop_factory=oxloop.new_event_loop`` in its backend options, unless the options already
  choose a loop (``loop_factory``, ``use_uvloop``); the project's own ``anyio_backend`` fixture
  is kept, so trio runs stay trio. ``both`` runs each such module on stock asyncio and on oxloop
  (anyio shares one runner per module, so the choice is per module).

- pytest-asyncio before 1.4 (no loop-factory hook): through its session fixture
  ``event_loop_policy``, which the plugin overrides with oxloop's policy (``both``: parametrised
  with asyncio's and oxloop's). A project's own ``event_loop_policy`` fixture wins.

Tests that call ``asyncio.run()`` themselves are not reached either; run pytest under
``OXLOOP=1`` for those (see oxloop's README).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

import oxloop
from oxloop import _compat

MODES = ("false", "true", "both")
_PLUGIN_NAME = "oxloop.pytest"  # the entry point's name too, so -p does not load it twice
_LOOP_PARAMETER = "oxloop_anyio_loop_factory"  # --oxloop=both: the loop of anyio's asyncio runs


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("oxloop")
    group.addoption(
        "--oxloop",
        choices=MODES,
        default=None,
        help="run async tests (pytest-asyncio, anyio) on oxloop (true), on both stock asyncio "
        "and oxloop (both), or leave them alone (false). Default: the 'oxloop' ini option, "
        "else true when loaded with -p oxloop.pytest, else false.",
    )
    parser.addini("oxloop", "true, both or false: as --oxloop", default="")


def mode(config: pytest.Config) -> str:
    chosen = config.getoption("oxloop") or str(config.getini("oxloop")).strip().lower()
    if chosen:
        if chosen not in MODES:
            raise pytest.UsageError(f"oxloop: ini option must be one of {MODES}, not {chosen!r}")
        return chosen
    return "true" if _PLUGIN_NAME in (config.option.plugins or []) else "false"


def loop_factories(config: pytest.Config) -> dict[str, Any]:
    """The loops each async test runs on, by test id, in this session's mode."""
    if mode(config) == "both":
        return {"asyncio": asyncio.SelectorEventLoop, "oxloop": oxloop.new_event_loop}
    return {"oxloop": oxloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    if mode(config) == "false":
        return
    # Asked before _Hooks is registered: its implementation would make the hook name exist.
    takes_policy_only = config.pluginmanager.has_plugin("asyncio") and not hasattr(
        config.hook, "pytest_asyncio_loop_factories"
    )
    # The hooks exist only when the plugin is on: off, it adds its options and nothing else.
    config.pluginmanager.register(_Hooks(), "oxloop.pytest.hooks")
    if takes_policy_only:
        config.pluginmanager.register(_policy_fixture(config), "oxloop.pytest.policy")


def _policy_fixture(config: pytest.Config) -> types.ModuleType:
    """pytest-asyncio before 1.4 makes its loops from the policy its session fixture
    ``event_loop_policy`` returns. A plugin registered after it overrides that fixture (a
    project's own, in a conftest, is nearer to its tests and still wins); with ``both`` it is
    parametrised, and the session runs every async test under each policy in turn."""
    names = list(loop_factories(config))
    policies = {"asyncio": _compat.POLICY_CLASS, "oxloop": getattr(oxloop, "EventLoopPolicy", None)}
    if any(policies[name] is None for name in names):
        raise pytest.UsageError(
            "oxloop: this pytest-asyncio chooses loops through event loop policies, which this "
            "Python no longer has; pytest-asyncio 1.4 or later takes loop factories"
        )

    @pytest.fixture(scope="session", autouse=True, params=names if len(names) > 1 else None)
    def event_loop_policy(request: pytest.FixtureRequest) -> Any:
        return policies[getattr(request, "param", names[0])]()

    holder = types.ModuleType("oxloop.pytest.policy")  # pytest reads fixtures off a module
    holder.event_loop_policy = event_loop_policy
    return holder


class _Hooks:
    @pytest.hookimpl(optionalhook=True, trylast=True)  # a project's own hook answers first
    def pytest_asyncio_loop_factories(self, config: pytest.Config, item: pytest.Item):
        return loop_factories(config)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        factories = loop_factories(metafunc.config)
        if "anyio_backend" not in metafunc.fixturenames or len(factories) == 1:
            return
        # anyio_backend is cached per module: it is made to depend on the loop parameter, so
        # pytest makes it again when the loop changes (anyio's runner is per module too).
        # (_arg2fixturedefs: pytest's private map of the fixtures this test uses.)
        for fixturedef in metafunc._arg2fixturedefs.get("anyio_backend", ()):
            if _LOOP_PARAMETER not in fixturedef.argnames:
                fixturedef.argnames += (_LOOP_PARAMETER,)
        metafunc.fixturenames.append(_LOOP_PARAMETER)
        metafunc.parametrize(
            _LOOP_PARAMETER,
            list(factories.values()),
            ids=list(factories),
            indirect=True,
            scope="module",
        )

    @pytest.fixture(scope="module", name=_LOOP_PARAMETER)
    def anyio_loop_factory(self, request: pytest.FixtureRequest) -> Any:
        return getattr(request, "param", oxloop.new_event_loop)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: pytest.FixtureRequest):
        if fixturedef.argname != "anyio_backend":
            return (yield)
        # The value of whichever anyio_backend fixture is in force (anyio's, or the project's)
        # gets the loop factory added; the fixture function is swapped back afterwards, the way
        # anyio's own plugin wraps async fixtures.
        original = fixturedef.func

        def with_loop_factory(*args: Any, **kwargs: Any) -> Any:
            factory = kwargs.pop(_LOOP_PARAMETER, oxloop.new_event_loop)
            return _with_loop_factory(original(*args, **kwargs), factory)

        fixturedef.func = with_loop_factory
        try:
            return (yield)
        finally:
            fixturedef.func = original


def _with_loop_factory(backend: Any, factory: Any) -> Any:
    if isinstance(backend, str):
        name, options = backend, {}
    elif isinstance(backend, tuple) and len(backend) == 2 and isinstance(backend[1], dict):
        name, options = backend
    else:  # not a value anyio accepts: anyio reports it
        return backend
    if name != "asyncio" or "loop_factory" in options or options.get("use_uvloop"):
        return backend
    return name, {**options, "loop_factory": factory}
