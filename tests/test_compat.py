"""oxloop._compat on the running interpreter: every private asyncio name oxloop uses exists, with
the signature oxloop calls it with, and every borrowed asyncio method finds the state it reads.

These tests are the alarm for a new CPython: when asyncio moves an internal, one of them fails,
naming it, instead of servers dropping their clients (what 3.13's `Server._attach(transport)`
did to the 3.11 spelling). Not a differential test: it checks oxloop's view of asyncio itself.
"""

import asyncio
import dis
import inspect
import sys
import types
import warnings

import pytest

import oxloop
from oxloop import _compat

PY = sys.version_info[:2]


def parameters(function):
    return list(inspect.signature(function).parameters)


# (what, the object, the parameter names oxloop relies on, as this version spells them)
SIGNATURES = [
    (
        "Server._attach",
        _compat.Server._attach,
        ["self", "transport"] if PY >= (3, 13) else ["self"],
    ),
    (
        "Server._detach",
        _compat.Server._detach,
        ["self", "transport"] if PY >= (3, 13) else ["self"],
    ),
    (
        "Server.__init__",
        _compat.Server.__init__,
        ["self", "loop", "sockets", "protocol_factory", "ssl_context", "backlog"]
        + ["ssl_handshake_timeout", "ssl_shutdown_timeout"],
    ),
    (
        "SSLProtocol.__init__",
        _compat.SSLProtocol.__init__,
        ["self", "loop", "app_protocol", "sslcontext", "waiter", "server_side", "server_hostname"]
        + ["call_connection_made", "ssl_handshake_timeout", "ssl_shutdown_timeout"],
    ),
    ("TransportSocket.__init__", _compat.TransportSocket.__init__, ["self", "sock"]),
    (
        "_UnixSubprocessTransport.__init__",
        _compat.UnixSubprocessTransport.__init__,
        ["self", "loop", "protocol", "args", "shell", "stdin", "stdout", "stderr", "bufsize"]
        + ["waiter", "extra", "kwargs"],
    ),
    (
        "_UnixReadPipeTransport.__init__",
        _compat.UnixReadPipeTransport.__init__,
        ["self", "loop", "pipe", "protocol", "waiter", "extra"],
    ),
    (
        "_UnixWritePipeTransport.__init__",
        _compat.UnixWritePipeTransport.__init__,
        ["self", "loop", "pipe", "protocol", "waiter", "extra"],
    ),
    (
        "base_events._ipaddr_info",
        _compat.ipaddr_info,
        ["host", "port", "family", "type", "proto", "flowinfo", "scopeid"],
    ),
    ("format_helpers.extract_stack", _compat.extract_stack, ["f", "limit"]),
    (
        "format_helpers._format_callback_source",
        asyncio.format_helpers._format_callback_source,
        ["func", "args", "debug"] if PY >= (3, 13) else ["func", "args"],
    ),
    ("runners._cancel_all_tasks", asyncio.runners._cancel_all_tasks, ["loop"]),
    ("tasks._wait", asyncio.tasks._wait, ["fs", "timeout", "return_when", "loop"]),
    ("tasks.wait_for", asyncio.tasks.wait_for, ["fut", "timeout"]),
    ("events._get_running_loop", asyncio.events._get_running_loop, []),
    ("events._set_running_loop", asyncio.events._set_running_loop, ["loop"]),
    ("base_events._run_until_complete_cb", _compat.run_until_complete_cb, ["fut"]),
    ("coroutines._is_debug_mode", asyncio.coroutines._is_debug_mode, []),
]


@pytest.mark.parametrize(
    "name, function, expected", SIGNATURES, ids=[name for name, _, _ in SIGNATURES]
)
def test_private_callable_has_the_signature_oxloop_calls(name, function, expected):
    try:
        actual = parameters(function)
    except ValueError:  # a C function without a signature: only its existence can be checked
        assert callable(function), name
        return
    assert actual == expected, f"{name}{inspect.signature(function)} on {sys.version}"


def test_borrowed_methods_are_the_running_pythons_own():
    assert _compat.BORROWED, "nothing registered: the mixins must borrow through _compat.borrow"
    for qualname, function in _compat.BORROWED.items():
        owner_name, _, name = qualname.rpartition(".")
        owner = {
            "BaseEventLoop": _compat.BaseEventLoop,
            "_UnixSelectorEventLoop": _compat.UnixSelectorEventLoop,
        }[owner_name]
        assert getattr(oxloop.Loop, name) is getattr(owner, name), qualname
        assert isinstance(function, types.FunctionType), qualname


_LOADS = ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_FAST_BORROW")
_ATTRIBUTE_OPS = ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR")


def self_attributes(code: types.CodeType, name: str | None = None) -> set[str]:
    """The attributes read or written on `self` (the first argument) in `code` and in the
    functions, lambdas and comprehensions nested in it (which see `self` by the same name)."""
    name = name or code.co_varnames[0]
    found: set[str] = set()
    previous = None
    for instruction in dis.get_instructions(code):
        if previous is not None and instruction.opname in _ATTRIBUTE_OPS:
            loaded = previous.argval
            if isinstance(loaded, tuple):
                # 3.13's LOAD_FAST_LOAD_FAST and STORE_FAST_LOAD_FAST: the last one is on top
                loaded = loaded[-1]
            if (previous.opname in _LOADS or isinstance(previous.argval, tuple)) and (
                loaded == name
            ):
                found.add(instruction.argval)
        previous = instruction
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= self_attributes(const, name)
    return found


def test_self_attributes_finds_what_a_method_reads():
    class Probe:
        def method(self, other):
            self.written = self.read + other.not_self
            self.called()
            return [self.in_comprehension for _ in range(1)]

    attributes = self_attributes(Probe.method.__code__)
    assert {"written", "read", "called", "in_comprehension"} <= attributes
    assert "not_self" not in attributes


def test_every_attribute_a_borrowed_method_reads_on_self_exists_on_an_oxloop_loop():
    """3.13's create_unix_server reads `self._unix_server_sockets`, state only asyncio's own
    loop __init__ made; the borrowed method raised AttributeError on oxloop."""
    loop = oxloop.new_event_loop()
    try:
        missing = {}
        for qualname, function in _compat.BORROWED.items():
            absent = sorted(a for a in self_attributes(function.__code__) if not hasattr(loop, a))
            if absent:
                missing[qualname] = absent
        assert not missing, f"borrowed methods read attributes an oxloop loop lacks: {missing}"
    finally:
        loop.close()


def test_task_internals_read_by_the_diagnostics_exist():
    async def main():
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        for attribute in _compat.TASK_ATTRIBUTES:
            assert hasattr(task, attribute), attribute
        await task
        assert _compat.task_exception(task) is None
        assert _compat.task_result(task) is None
        gathered = asyncio.gather(asyncio.sleep(0))
        assert isinstance(getattr(gathered, _compat.GATHER_CHILDREN), list)
        await gathered

    oxloop.run(main())


def test_code_objects_matched_by_the_task_tree_are_asyncios():
    assert _compat.CANCEL_ALL_TASKS_CODE is asyncio.runners._cancel_all_tasks.__code__
    assert _compat.WAIT_CODE is asyncio.tasks._wait.__code__
    assert _compat.WAIT_FOR_CODE is asyncio.tasks.wait_for.__code__
    # The coroutine that waits for a TaskGroup's children holds the group as `self`.
    code = _compat.TASKGROUP_WAIT_CODE
    assert code is not None and code.co_varnames[0] == "self"
    assert _compat.TASKGROUP_TASKS in self_attributes(code)
    # wait() holds its set as `fs`, wait_for() its target as `fut`: the frames are read by name.
    assert "fs" in _compat.WAIT_CODE.co_varnames
    assert "fut" in _compat.WAIT_FOR_CODE.co_varnames


def test_cpython_private_names_oxloop_uses_exist():
    assert callable(warnings._warn_unawaited_coroutine)  # the forgotten-await hook
    assert callable(sys._current_frames)  # the blocking watchdog's stack
    assert callable(sys._getframe)
    # OXLOOP=1 wraps both: stock loops call the first, uvloop takes the second at import.
    assert callable(asyncio.events._set_running_loop) and callable(asyncio._set_running_loop)
    assert issubclass(_compat.FlowControlMixin, asyncio.Transport)
    assert _compat.SendfileMode.TRY_NATIVE
    for value in (
        _compat.SSL_HANDSHAKE_TIMEOUT,
        _compat.SSL_SHUTDOWN_TIMEOUT,
        _compat.ACCEPT_RETRY_DELAY,
        _compat.SENDFILE_FALLBACK_READBUFFER_SIZE,
    ):
        assert isinstance(value, (int, float)) and value > 0


def test_policy_names_match_the_version():
    if PY >= (3, 16):
        assert _compat.POLICY_CLASS is None
        with pytest.raises(NotImplementedError):
            oxloop.EventLoopPolicy()
        return
    assert _compat.POLICY_CLASS is not None and _compat.set_event_loop_policy is not None
    # 3.14 warns on the public name; its private twin is the same class.
    base = getattr(asyncio.events, "_AbstractEventLoopPolicy", None)
    assert isinstance(oxloop.EventLoopPolicy(), base or asyncio.AbstractEventLoopPolicy)


def test_policies_are_set_without_deprecation_warnings_where_they_are_deprecated(monkeypatch):
    """3.14 and 3.15 warn on asyncio.set_event_loop_policy; oxloop's own commands (python -m
    oxloop) set theirs quietly there. Stood in for here by a setter that warns as 3.14's does."""
    calls = []

    def warning_setter(policy):
        warnings.warn("'asyncio.set_event_loop_policy' is deprecated", DeprecationWarning, 2)
        calls.append(policy)

    monkeypatch.setattr(asyncio, "set_event_loop_policy", warning_setter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compat._set_policy_quietly("policy")
    assert calls == ["policy"]


def test_tls_layer_replaces_only_what_asyncios_ssl_protocol_has():
    # oxloop.tls.TLSProtocol overrides SSLProtocol's per-record methods by name and stores the
    # state they share in fields named as SSLProtocol's attributes: a CPython that renames one
    # must fail here, not leave a field that asyncio's code no longer writes.
    import ssl

    from oxloop import _oxloop

    layer = vars(_oxloop.TlsLayer)
    methods = {n for n, v in layer.items() if callable(v) and not n.startswith("__")}
    fields = {n for n, v in layer.items() if isinstance(v, types.GetSetDescriptorType)}
    # The application transport's write(), and the send of the records left for the end of the
    # loop's iteration: not SSLProtocol methods.
    ours = {"_app_write", "_flush_deferred"}
    assert methods - ours <= set(vars(_compat.SSLProtocol)), methods - ours
    for name in methods - ours:
        mine = inspect.signature(getattr(_oxloop.TlsLayer, name))
        theirs = inspect.signature(getattr(_compat.SSLProtocol, name))
        assert len(mine.parameters) == len(theirs.parameters), (name, mine, theirs)
    loop = asyncio.new_event_loop()
    try:
        stock = _compat.SSLProtocol(
            loop, asyncio.Protocol(), ssl.create_default_context(), None, server_hostname="x"
        )
    finally:
        loop.close()
    assert fields <= set(vars(stock)), fields - set(vars(stock))
