"""Name resolution: getaddrinfo, getnameinfo and the loop's _ensure_resolved.

Covers: numeric hosts and ports give exactly socket.getaddrinfo's list (and on oxloop are
answered without the executor); host and service names go through the executor; errors are
socket.getaddrinfo's; getnameinfo; asyncio's debug-mode log lines; _ensure_resolved for IP
literals and names. Only loopback names and numbers: no test needs a DNS server.
"""

import concurrent.futures
import logging
import socket

import pytest
from nethelpers import run

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5

NUMERIC_QUERIES = [
    ("127.0.0.1", 80, {}),
    ("::1", 443, {}),
    ("127.0.0.1", None, {}),
    ("127.0.0.1", "8080", {}),
    (b"127.0.0.1", b"53", {"type": socket.SOCK_DGRAM}),
    (None, 0, {"flags": socket.AI_PASSIVE}),
    (None, 8000, {}),
    ("::", 0, {"family": socket.AF_INET6, "flags": socket.AI_PASSIVE}),
    ("0.0.0.0", 1, {"type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP}),
    ("127.1", 7, {}),
    ("::ffff:127.0.0.1", 9, {"family": socket.AF_INET6}),
    ("fe80::1%lo", 5, {}),
    ("127.0.0.1", 80, {"flags": socket.AI_ADDRCONFIG}),
    ("127.0.0.1", 80, {"flags": socket.AI_CANONNAME}),
]


def expected(host, port, family=0, type=0, proto=0, flags=0):
    return socket.getaddrinfo(host, port, family, type, proto, flags)


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=1)
        self.submitted = []

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(fn)
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def executor(loop):
    pool = CountingExecutor()
    loop.set_default_executor(pool)
    yield pool
    pool.shutdown(wait=True)


@pytest.mark.parametrize("host, port, kwargs", NUMERIC_QUERIES, ids=repr)
def test_getaddrinfo_numeric_gives_socket_getaddrinfo_result(loop, host, port, kwargs):
    assert run(loop, loop.getaddrinfo(host, port, **kwargs), TIMEOUT) == expected(
        host, port, **kwargs
    )


@pytest.mark.oxloop_only("stock asyncio resolves every query in the executor")
def test_getaddrinfo_numeric_answers_without_the_executor(loop, executor):
    async def main():
        return [await loop.getaddrinfo("127.0.0.1", 80), await loop.getaddrinfo("::1", "443")]

    assert run(loop, main(), TIMEOUT) == [expected("127.0.0.1", 80), expected("::1", "443")]
    assert executor.submitted == []


@pytest.mark.oxloop_only("stock asyncio resolves every query in the executor")
def test_getaddrinfo_canonical_name_uses_the_executor(loop, executor):
    query = ("127.0.0.1", 80, 0, 0, 0, socket.AI_CANONNAME)
    result = run(loop, loop.getaddrinfo(*query[:2], flags=query[5]), TIMEOUT)
    assert result == expected(*query)
    assert executor.submitted == [socket.getaddrinfo]


def test_getaddrinfo_host_name_uses_the_executor(loop, executor):
    result = run(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM), TIMEOUT)
    assert result == expected("localhost", 80, type=socket.SOCK_STREAM)
    assert executor.submitted == [socket.getaddrinfo]


def test_getaddrinfo_service_name_uses_the_executor(loop, executor):
    try:
        want = expected("127.0.0.1", "http", type=socket.SOCK_STREAM)
    except socket.gaierror:
        pytest.skip("no 'http' service in this system's services database")
    assert run(loop, loop.getaddrinfo("127.0.0.1", "http", type=socket.SOCK_STREAM), TIMEOUT) == (
        want
    )
    assert executor.submitted == [socket.getaddrinfo]


@pytest.mark.parametrize(
    "host, port, kwargs",
    [
        ("127.0.0.1", 80, {"family": 12345}),  # unknown family: EAI_FAMILY
        ("127.0.0.1", "no-such-service-oxloop", {}),  # EAI_SERVICE / EAI_NONAME
        (12345, 80, {}),  # TypeError: the host must be a string, bytes or None
        ("127.0.0.1", 1.5, {}),  # OSError: port must be int, str or bytes
    ],
    ids=repr,
)
def test_getaddrinfo_errors_are_socket_getaddrinfo_errors(loop, host, port, kwargs):
    with pytest.raises(Exception) as want:
        expected(host, port, **kwargs)
    with pytest.raises(type(want.value)) as got:
        run(loop, loop.getaddrinfo(host, port, **kwargs), TIMEOUT)
    assert got.value.args == want.value.args


def test_getnameinfo_numeric(loop):
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    assert run(loop, loop.getnameinfo(("127.0.0.1", 8080), flags), TIMEOUT) == ("127.0.0.1", "8080")


def test_getnameinfo_gives_socket_getnameinfo_result(loop, executor):
    sockaddr = ("127.0.0.1", 80)
    assert run(loop, loop.getnameinfo(sockaddr), TIMEOUT) == socket.getnameinfo(sockaddr, 0)
    assert executor.submitted == [socket.getnameinfo]


def test_getaddrinfo_debug_mode_logs_the_lookup(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 1000.0  # nothing counts as slow
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM), TIMEOUT)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.DEBUG, "Get address info localhost:80, type=<SocketKind.SOCK_STREAM: 1>") in (
        messages
    )
    took = [m for m in messages if m[1].startswith("Getting address info localhost:80")]
    assert len(took) == 1 and took[0][0] == logging.DEBUG


def test_getaddrinfo_debug_mode_logs_slow_lookup_at_info(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0  # every lookup counts as slow
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(loop, loop.getaddrinfo("localhost", 80), TIMEOUT)
    slow = [r for r in caplog.records if r.getMessage().startswith("Getting address info")]
    assert [r.levelno for r in slow] == [logging.INFO]
    assert " took " in slow[0].getMessage()


@pytest.mark.parametrize(
    "address, kwargs, want",
    [
        (
            ("127.0.0.1", 80),
            {},
            [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))],
        ),
        (
            ("::1", "81", 0, 3),
            {"type": socket.SOCK_DGRAM},
            [(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", ("::1", 81, 0, 3))],
        ),
        (
            ("127.0.0.1", None),
            {"family": socket.AF_INET},
            [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 0))],
        ),
    ],
    ids=repr,
)
def test_ensure_resolved_builds_entry_for_ip_literal(loop, address, kwargs, want):
    assert run(loop, loop._ensure_resolved(address, loop=loop, **kwargs), TIMEOUT) == want


def test_ensure_resolved_resolves_names(loop):
    result = run(loop, loop._ensure_resolved(("localhost", 80), loop=loop), TIMEOUT)
    assert result == expected("localhost", 80, type=socket.SOCK_STREAM)
