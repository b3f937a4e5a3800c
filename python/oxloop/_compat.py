"""Every private asyncio name oxloop uses, and how each CPython version (3.11 to 3.15) spells it.

oxloop reuses asyncio's once-per-connection orchestration (address resolution, happy eyeballs,
`asyncio.Server`, TLS, pipes) and reads a few task internals for its diagnostics. None of that is
public API, and it changes between versions: 3.13 made `Server._attach()` take the transport,
and a loop written against 3.11's spelling dropped every client on 3.13. So the rest of the
package takes those names from here and never from asyncio's private modules directly; where
versions differ, this module adapts; and `tests/test_compat.py` checks on the running
interpreter that each name exists with the signature oxloop calls it with, and that every
borrowed method finds on an oxloop loop each attribute of `self` it reads. A new CPython that
moves something fails that test, by name, instead of dropping connections.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from asyncio import (
    base_events,
    base_subprocess,
    constants,
    coroutines,
    events,
    format_helpers,
    runners,
    sslproto,
    taskgroups,
    tasks,
    transports,
    trsock,
    unix_events,
)
from typing import Any

PY = sys.version_info[:2]

# -- borrowed loop methods --------------------------------------------------------------------
#
# Methods of asyncio's loop classes that are pure logic over loop hooks oxloop provides. Each
# is registered so the test can check, per version, that every `self.<attribute>` it reads
# exists on an oxloop loop (3.13's `create_unix_server` started to read `_unix_server_sockets`,
# state only `_UnixSelectorEventLoop.__init__` makes).

BaseEventLoop = base_events.BaseEventLoop
UnixSelectorEventLoop = unix_events._UnixSelectorEventLoop

BORROWED: dict[str, Any] = {}


def borrow(owner: type, name: str) -> Any:
    """`owner.name`, recorded as a method oxloop's loop takes from asyncio as it is."""
    function = getattr(owner, name)
    BORROWED[f"{owner.__name__}.{name}"] = function
    return function


# -- servers ----------------------------------------------------------------------------------
#
# A server counts the transports it accepted, so that `wait_closed()` waits for them and (3.13)
# `close_clients()` / `abort_clients()` reach them.

Server = base_events.Server

if PY >= (3, 13):

    def server_attach(server: Any, transport: Any) -> None:
        server._attach(transport)

    def server_detach(server: Any, transport: Any) -> None:
        server._detach(transport)

else:

    def server_attach(server: Any, transport: Any) -> None:
        server._attach()

    def server_detach(server: Any, transport: Any) -> None:
        server._detach()


# -- transports -------------------------------------------------------------------------------

FlowControlMixin = transports._FlowControlMixin
TransportSocket = trsock.TransportSocket
SSLProtocol = sslproto.SSLProtocol
SSLProtocolTransport = sslproto._SSLProtocolTransport


def take_unread_stream_data(protocol: Any) -> bytes:
    """What a `StreamReaderProtocol`'s reader holds unread, taken out of it (b"" for any other
    protocol): `start_tls` hands it to the TLS handshake (CPython gh-142352)."""
    if not isinstance(protocol, asyncio.StreamReaderProtocol):
        return b""
    reader = protocol._stream_reader
    if reader is None:
        return b""
    data = bytes(reader._buffer)
    reader._buffer.clear()
    return data


SendfileMode = constants._SendfileMode
SSL_HANDSHAKE_TIMEOUT = constants.SSL_HANDSHAKE_TIMEOUT
SSL_SHUTDOWN_TIMEOUT = constants.SSL_SHUTDOWN_TIMEOUT
ACCEPT_RETRY_DELAY = constants.ACCEPT_RETRY_DELAY
SENDFILE_FALLBACK_READBUFFER_SIZE = constants.SENDFILE_FALLBACK_READBUFFER_SIZE
UnixReadPipeTransport = unix_events._UnixReadPipeTransport
UnixWritePipeTransport = unix_events._UnixWritePipeTransport
UnixSubprocessTransport = unix_events._UnixSubprocessTransport
BaseSubprocessTransport = base_subprocess.BaseSubprocessTransport

ipaddr_info = base_events._ipaddr_info

# -- the running loop and debug mode ----------------------------------------------------------


def get_running_loop_or_none() -> Any:
    # Looked up on every call: CPython's tests swap in the pure-Python implementations.
    return events._get_running_loop()


def set_running_loop(loop: Any) -> None:
    events._set_running_loop(loop)


def wrap_set_running_loop(make_wrapper: Any) -> None:
    """Route every loop's "I am running" call through `make_wrapper(original)` (OXLOOP=1 uses it
    to notice a loop that is not oxloop's). Stock asyncio's loops look up
    `events._set_running_loop` at each call; uvloop takes `asyncio._set_running_loop` once,
    when it is imported, so both are replaced."""
    wrapper = make_wrapper(events._set_running_loop)
    events._set_running_loop = wrapper
    asyncio._set_running_loop = wrapper


# The done callback run_until_complete() adds to its future. oxloop adds asyncio's own function
# rather than an equivalent: anyio finds the program's root task (which its worker threads live
# as long as) by this callback, and on any other loop treats each task as a root, starting a
# thread per to_thread.run_sync() caller instead of reusing one.
run_until_complete_cb = base_events._run_until_complete_cb


extract_stack = format_helpers.extract_stack

if PY >= (3, 13):

    def format_callback_source(func: Any, args: Any, debug: bool) -> str:
        # 3.13 shows a callback's arguments only in debug mode (they may hold secrets).
        return format_helpers._format_callback_source(func, args, debug=debug)

else:

    def format_callback_source(func: Any, args: Any, debug: bool) -> str:
        return format_helpers._format_callback_source(func, args)


# asyncio.iscoroutinefunction is deprecated from 3.14 (it warns); asyncio itself then uses
# its private twin, which recognises the same functions.
iscoroutinefunction = (
    getattr(coroutines, "_iscoroutinefunction", None) or asyncio.iscoroutinefunction
)


def debug_mode_requested() -> bool:
    """Whether new loops start in debug mode (`-X dev`, PYTHONASYNCIODEBUG), asked of asyncio
    on every call, because tests patch `asyncio.coroutines._is_debug_mode`."""
    return bool(coroutines._is_debug_mode())


if PY >= (3, 12):

    def handler_context(context: dict[str, Any]) -> Any:
        """The `contextvars.Context` a custom exception handler runs in (3.12+): the task's,
        the future's, or the handle's the report is about; None for the caller's."""
        for key in ("task", "future", "handle"):
            thing = context.get(key)
            if thing is not None:
                get_context = getattr(thing, "get_context", None)
                if get_context is None:
                    return None
                ctx = get_context()
                return ctx if hasattr(ctx, "run") else None
        return None

else:

    def handler_context(context: dict[str, Any]) -> Any:
        return None


# -- the event loop policy system: deprecated in 3.14, removed in 3.16 -----------------------
#
# Through 3.13 the public names; 3.14 and 3.15 warn on the public names (the policy class is
# `unix_events._DefaultEventLoopPolicy` there, and the setter is taken from its private twin
# or called with the warning silenced); 3.16 has none (POLICY_CLASS is then None).

POLICIES_DEPRECATED = PY >= (3, 14)


def _without_deprecation_warnings(get: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return get()


def _set_policy_quietly(policy: Any) -> None:
    _without_deprecation_warnings(lambda: asyncio.set_event_loop_policy(policy))


if not POLICIES_DEPRECATED:
    POLICY_CLASS = asyncio.DefaultEventLoopPolicy
    set_event_loop_policy = asyncio.set_event_loop_policy
elif hasattr(asyncio, "set_event_loop_policy"):  # 3.14, 3.15: still there, deprecated
    POLICY_CLASS = getattr(unix_events, "_DefaultEventLoopPolicy", None) or (
        _without_deprecation_warnings(lambda: asyncio.DefaultEventLoopPolicy)
    )
    set_event_loop_policy = getattr(events, "_set_event_loop_policy", None) or _set_policy_quietly
else:  # 3.16: gone
    POLICY_CLASS = None
    set_event_loop_policy = None


# -- tasks ------------------------------------------------------------------------------------
#
# The diagnostics read a task's outcome without marking it retrieved, and find what a task waits
# for in the frames of asyncio's own waiting coroutines, matched by code object.

TASK_ATTRIBUTES = ("_exception", "_result", "_fut_waiter", "_log_destroy_pending")
GATHER_CHILDREN = "_children"  # on the future gather() returns


def task_exception(task: asyncio.Task) -> BaseException | None:
    return task._exception


def task_result(task: asyncio.Task) -> Any:
    return task._result


def task_waiter(task: asyncio.Task) -> Any:
    return task._fut_waiter


def task_quiet_when_destroyed_pending(task: asyncio.Future) -> None:
    """No "Task was destroyed but it is pending!" for a task the caller never saw."""
    task._log_destroy_pending = False


def _code(owner: Any, *names: str) -> Any:
    """The code object of the first of `owner.<names>` that exists, or None: a diagnostics
    helper that a new version renames is then not followed (tests/test_compat.py fails)."""
    for name in names:
        function = getattr(owner, name, None)
        if function is not None:
            return getattr(function, "__code__", None)
    return None


# asyncio.run() and asyncio.Runner cancel the tasks left over after main() from this function.
CANCEL_ALL_TASKS_CODE = _code(runners, "_cancel_all_tasks")
# The coroutine a TaskGroup's `async with` block waits for its children in: 3.13 moved the wait
# from `__aexit__` into `_aexit`, which `__aexit__` awaits. Its frame holds the group as `self`.
TASKGROUP_WAIT_CODE = _code(taskgroups.TaskGroup, "_aexit", "__aexit__")
TASKGROUP_TASKS = "_tasks"  # the group's set of live children
# asyncio.wait()'s worker, whose frame holds the awaited set as `fs`.
WAIT_CODE = _code(tasks, "_wait")
# asyncio.wait_for(), whose frame holds its target as `fut`.
WAIT_FOR_CODE = _code(tasks, "wait_for")
