"""Low-level socket methods: sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into,
sock_sendall, sock_sendto, sock_connect, sock_accept, sock_sendfile.

Covers: each method when the data or peer is already there and when it has to wait; end of
stream; a multi-megabyte sendall through small socket buffers; the non-blocking check (debug
mode, as asyncio) and the SSL socket refusal; a refused connect; connect resolving a host name;
cancelled operations leaving no reader or writer on their fd, also when the fd number is reused
at once; no fd leak; sendfile with offsets and counts, its fallback and its argument checks.
"""

import array
import asyncio
import errno
import io
import os
import select
import socket
import ssl

import pytest
from nethelpers import fd_count, payload, run, shrink_buffers

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5


def nonblocking(sock):
    sock.setblocking(False)
    return sock


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield nonblocking(a), nonblocking(b)
    a.close()
    b.close()


@pytest.fixture
def listener():
    sock = nonblocking(socket.create_server(("127.0.0.1", 0)))
    yield sock
    sock.close()


@pytest.fixture
def udp_pair():
    a = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    b = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def stalled_address():
    """An address a connect() to stays in progress at: a listener whose accept queue is full.

    Linux drops the SYN of a connection that would overflow the queue, so the client waits to
    retransmit (a second or more) and its connect() is pending meanwhile.
    """
    server = socket.create_server(("127.0.0.1", 0), backlog=0)
    address = server.getsockname()
    fillers = []
    try:
        for _ in range(8):
            sock = nonblocking(socket.socket())
            fillers.append(sock)
            sock.connect_ex(address)
            _, writable, _ = select.select([], [sock], [], 0.1)
            if not writable:
                break
        else:
            pytest.fail("could not fill the accept queue of a backlog-0 listener")
        yield address
    finally:
        for sock in fillers:
            sock.close()
        server.close()


def assert_unwatched(loop, fd):
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


# --- receiving ------------------------------------------------------------------------------


def test_sock_recv_returns_data_already_there(loop, pair):
    a, b = pair
    b.send(b"hello")
    assert run(loop, loop.sock_recv(a, 100), TIMEOUT) == b"hello"
    assert_unwatched(loop, a.fileno())


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.05, b.send, b"later")
        return await loop.sock_recv(a, 100)

    assert run(loop, main(), TIMEOUT) == b"later"
    assert_unwatched(loop, a.fileno())


def test_sock_recv_returns_empty_bytes_at_eof(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.05, b.shutdown, socket.SHUT_WR)
        return await loop.sock_recv(a, 100)

    assert run(loop, main(), TIMEOUT) == b""


def test_sock_recv_reports_connection_reset(loop, listener):
    async def main():
        client = nonblocking(socket.socket())
        with client:
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await loop.sock_accept(listener)
            with conn:
                # SO_LINGER 0: close() sends RST, which the waiting recv must report.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                loop.call_later(0.05, conn.close)
                with pytest.raises(ConnectionResetError):
                    await loop.sock_recv(client, 100)
            assert_unwatched(loop, client.fileno())

    run(loop, main(), TIMEOUT)


def test_sock_recv_into_fills_the_buffer(loop, pair):
    a, b = pair
    buf = bytearray(10)

    async def main():
        loop.call_later(0.05, b.send, b"abc")
        return await loop.sock_recv_into(a, buf)

    assert run(loop, main(), TIMEOUT) == 3
    assert buf[:3] == b"abc"


def test_sock_recv_into_returns_zero_at_eof(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.05, b.shutdown, socket.SHUT_WR)
        return await loop.sock_recv_into(a, bytearray(10))

    assert run(loop, main(), TIMEOUT) == 0
    assert_unwatched(loop, a.fileno())


def test_sock_recv_into_a_read_only_buffer_raises_type_error(loop, pair):
    a, b = pair
    b.send(b"x")  # the first attempt already has data: the buffer is checked then
    with pytest.raises(TypeError):
        run(loop, loop.sock_recv_into(a, b"read-only"), TIMEOUT)


def test_sock_recvfrom_returns_datagram_and_sender(loop, udp_pair):
    a, b = udp_pair

    async def main():
        loop.call_later(0.05, b.sendto, b"ping", a.getsockname())
        return await loop.sock_recvfrom(a, 100)

    assert run(loop, main(), TIMEOUT) == (b"ping", b.getsockname())


def test_sock_recvfrom_into_honours_nbytes(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(10)

    async def main():
        loop.call_later(0.05, b.sendto, b"0123456789", a.getsockname())
        return await loop.sock_recvfrom_into(a, buf, 4)

    assert run(loop, main(), TIMEOUT) == (4, b.getsockname())
    assert buf == b"0123" + bytes(6)


def test_sock_recvfrom_into_defaults_to_whole_buffer(loop, udp_pair):
    a, b = udp_pair
    b.sendto(b"xyz", a.getsockname())
    select.select([a], [], [], TIMEOUT)
    buf = bytearray(5)
    assert run(loop, loop.sock_recvfrom_into(a, buf), TIMEOUT) == (3, b.getsockname())
    assert buf == b"xyz\0\0"


# --- sending --------------------------------------------------------------------------------


def test_sock_sendall_large_buffer_through_small_socket_buffers(loop, pair):
    # 4 MiB through ~32 KiB of kernel buffers: the send has to wait for writability many times.
    a, b = pair
    shrink_buffers(a)
    shrink_buffers(b)
    data = payload(4 * 1024 * 1024)

    async def receive():
        got = bytearray()
        while len(got) < len(data):
            chunk = await loop.sock_recv(b, 65536)
            assert chunk, "EOF before all data arrived"
            got += chunk
        return bytes(got)

    async def main():
        reader = asyncio.ensure_future(receive())
        await loop.sock_sendall(a, data)
        assert_unwatched(loop, a.fileno())
        return await reader

    assert run(loop, main(), TIMEOUT) == data


def test_sock_sendall_returns_none_and_sends_bytes(loop, pair):
    a, b = pair
    assert run(loop, loop.sock_sendall(a, memoryview(b"abc")), TIMEOUT) is None
    assert b.recv(10) == b"abc"


@pytest.mark.oxloop_only("asyncio counts a typed buffer in items and spins forever on it")
def test_sock_sendall_counts_typed_buffers_in_bytes(loop, pair):
    a, b = pair
    data = array.array("i", [1, 2, 3, 4])
    run(loop, loop.sock_sendall(a, data), TIMEOUT)
    assert b.recv(100) == data.tobytes()
    assert_unwatched(loop, a.fileno())


def test_sock_sendall_to_closed_peer_raises_broken_pipe(loop, pair):
    a, b = pair
    b.close()
    with pytest.raises(BrokenPipeError):
        run(loop, loop.sock_sendall(a, b"x" * 1024), TIMEOUT)


def test_sock_sendto_sends_datagram_and_returns_size(loop, udp_pair):
    a, b = udp_pair
    assert run(loop, loop.sock_sendto(a, b"datagram", b.getsockname()), TIMEOUT) == 8
    select.select([b], [], [], TIMEOUT)
    assert b.recvfrom(100) == (b"datagram", a.getsockname())


# --- connecting and accepting ---------------------------------------------------------------


def test_sock_connect_and_sock_accept(loop, listener):
    async def main():
        client = nonblocking(socket.socket())
        with client:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0.02)  # the accept is waiting now
            assert await loop.sock_connect(client, listener.getsockname()) is None
            conn, address = await accept
            with conn:
                assert conn.gettimeout() == 0  # non-blocking, as asyncio returns it
                assert address == client.getsockname()
                await loop.sock_sendall(client, b"over tcp")
                assert await loop.sock_recv(conn, 100) == b"over tcp"
            assert_unwatched(loop, listener.fileno())
            assert_unwatched(loop, client.fileno())

    run(loop, main(), TIMEOUT)


def test_sock_accept_returns_connection_already_queued(loop, listener):
    client = socket.create_connection(listener.getsockname())
    with client:
        conn, address = run(loop, loop.sock_accept(listener), TIMEOUT)
        with conn:
            assert address == client.getsockname()


def test_sock_connect_refused(loop):
    # A bound socket that does not listen answers a SYN with RST; keeping it open keeps the port.
    with socket.socket() as closed_port, nonblocking(socket.socket()) as client:
        closed_port.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            run(loop, loop.sock_connect(client, closed_port.getsockname()), TIMEOUT)
        assert_unwatched(loop, client.fileno())


def test_sock_connect_resolves_localhost(loop, listener):
    async def main():
        with nonblocking(socket.socket(socket.AF_INET)) as client:
            await loop.sock_connect(client, ("localhost", listener.getsockname()[1]))
            assert client.getpeername() == listener.getsockname()
            conn, _ = await loop.sock_accept(listener)
            conn.close()

    run(loop, main(), TIMEOUT)


def test_sock_connect_unix_path(loop, tmp_path):
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        nonblocking(server)

        async def main():
            with nonblocking(socket.socket(socket.AF_UNIX)) as client:
                await loop.sock_connect(client, path)
                conn, _ = await loop.sock_accept(server)
                with conn:
                    await loop.sock_sendall(conn, b"unix")
                    assert await loop.sock_recv(client, 10) == b"unix"

        run(loop, main(), TIMEOUT)


# --- wrong sockets ---------------------------------------------------------------------------

OPERATIONS = {
    "sock_recv": lambda loop, s: loop.sock_recv(s, 1),
    "sock_recv_into": lambda loop, s: loop.sock_recv_into(s, bytearray(1)),
    "sock_recvfrom": lambda loop, s: loop.sock_recvfrom(s, 1),
    "sock_recvfrom_into": lambda loop, s: loop.sock_recvfrom_into(s, bytearray(1)),
    "sock_sendall": lambda loop, s: loop.sock_sendall(s, b"x"),
    "sock_sendto": lambda loop, s: loop.sock_sendto(s, b"x", ("127.0.0.1", 9)),
    "sock_connect": lambda loop, s: loop.sock_connect(s, ("127.0.0.1", 9)),
    "sock_accept": lambda loop, s: loop.sock_accept(s),
    "sock_sendfile": lambda loop, s: loop.sock_sendfile(s, io.BytesIO(b"x")),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_blocking_socket_is_refused_in_debug_mode(loop, operation):
    loop.set_debug(True)
    with socket.socket() as sock:  # blocking: gettimeout() is None
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, OPERATIONS[operation](loop, sock), TIMEOUT)


@pytest.mark.oxloop_only("asyncio checks for a blocking socket only in debug mode")
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_blocking_socket_is_refused_outside_debug_mode_too(loop, operation):
    assert not loop.get_debug()
    with socket.socket() as sock:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, OPERATIONS[operation](loop, sock), TIMEOUT)


# asyncio checks only when the call has to wait (oxloop checks first), so only calls that wait
# here are compared.
@pytest.mark.parametrize("operation", ["sock_recv", "sock_recv_into"])
def test_socket_owned_by_a_transport_is_refused(loop, operation):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        sock = transport.get_extra_info("socket")._sock
        calls = {
            "sock_recv": lambda: loop.sock_recv(sock, 10),
            "sock_recv_into": lambda: loop.sock_recv_into(sock, bytearray(10)),
        }
        with pytest.raises(RuntimeError, match="is used by transport"):
            await calls[operation]()
        transport.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)

    run(loop, main(), TIMEOUT)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_ssl_socket_is_refused(loop, operation):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    with context.wrap_socket(socket.socket(), do_handshake_on_connect=False) as sock:
        sock.setblocking(False)
        with pytest.raises(TypeError, match="Socket cannot be of type SSLSocket"):
            run(loop, OPERATIONS[operation](loop, sock), TIMEOUT)


# --- cancellation ---------------------------------------------------------------------------


async def cancel_while_waiting(coro):
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0.02)
    assert not task.done(), "the operation should be waiting for its fd"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_cancelled_sock_recv_leaves_no_reader(loop, pair):
    a, b = pair
    run(loop, cancel_while_waiting(loop.sock_recv(a, 100)), TIMEOUT)
    assert_unwatched(loop, a.fileno())
    b.send(b"still here")  # nothing consumed it
    assert run(loop, loop.sock_recv(a, 100), TIMEOUT) == b"still here"


@pytest.mark.parametrize("operation", ["sock_recv", "sock_recv_into"])
def test_cancelled_recv_consumes_no_data_that_arrives_before_the_task_resumes(
    loop, pair, operation
):
    # The cancel and the data come in the same iteration: the wait sees the readable fd before
    # the task has seen its CancelledError, and must not read for a future that is done.
    a, b = pair
    buf = bytearray(100)
    calls = {
        "sock_recv": lambda: loop.sock_recv(a, 100),
        "sock_recv_into": lambda: loop.sock_recv_into(a, buf),
    }

    async def main():
        task = asyncio.ensure_future(calls[operation]())
        await asyncio.sleep(0.02)
        task.cancel()
        b.send(b"for the next reader")
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main(), TIMEOUT)
    assert_unwatched(loop, a.fileno())
    assert buf == bytearray(100)  # a cancelled recv_into wrote nothing into the buffer
    assert run(loop, loop.sock_recv(a, 100), TIMEOUT) == b"for the next reader"


def test_sock_recv_and_sock_sendall_wait_on_one_socket_at_once(loop, pair):
    # Both directions of one fd watched together: each wait completes, neither starves.
    a, b = pair
    shrink_buffers(a)
    shrink_buffers(b)
    data = payload(1024 * 1024)

    async def peer():
        got = bytearray()
        while len(got) < len(data):
            got += await loop.sock_recv(b, 65536)
        await loop.sock_sendall(b, b"done")
        return bytes(got)

    async def main():
        received = asyncio.ensure_future(peer())
        reply = asyncio.ensure_future(loop.sock_recv(a, 100))
        await loop.sock_sendall(a, data)
        assert await reply == b"done"
        return await received

    assert run(loop, main(), TIMEOUT) == data
    assert_unwatched(loop, a.fileno())


def test_reader_added_after_sock_recv_waits_gets_events(loop, pair):
    # After waits that completed, the fd is watched again from scratch by add_reader.
    a, b = pair

    async def main():
        for i in range(3):
            loop.call_later(0.01, b.send, b"%d" % i)
            assert await loop.sock_recv(a, 100) == b"%d" % i
        readable = loop.create_future()
        loop.add_reader(a, readable.set_result, None)
        b.send(b"x")
        await readable
        assert loop.remove_reader(a)

    run(loop, main(), TIMEOUT)


def test_sock_recv_on_a_reused_fd_number_after_completed_waits(loop):
    # A socket closed after its waits completed, its number reused at once by a new socket:
    # a wait on the new socket must get the new socket's data.
    async def main():
        reused = 0
        for i in range(10):
            a, b = map(nonblocking, socket.socketpair())
            fd = a.fileno()
            with b:
                with a:
                    loop.call_later(0.01, b.send, b"old")
                    assert await loop.sock_recv(a, 100) == b"old"
                c, d = map(nonblocking, socket.socketpair())
                with c, d:
                    reused += c.fileno() == fd
                    loop.call_later(0.01, d.send, b"new %d" % i)
                    assert await loop.sock_recv(c, 100) == b"new %d" % i
        return reused

    assert run(loop, main(), TIMEOUT) > 0


def test_cancelled_sock_accept_leaves_no_reader(loop, listener):
    run(loop, cancel_while_waiting(loop.sock_accept(listener)), TIMEOUT)
    assert_unwatched(loop, listener.fileno())


def test_cancelled_sock_sendall_leaves_no_writer(loop, pair):
    a, _ = pair
    shrink_buffers(a)
    run(loop, cancel_while_waiting(loop.sock_sendall(a, bytes(1024 * 1024))), TIMEOUT)
    assert_unwatched(loop, a.fileno())


def test_cancelled_sock_connect_leaves_no_writer(loop, stalled_address):
    with nonblocking(socket.socket()) as client:
        run(loop, cancel_while_waiting(loop.sock_connect(client, stalled_address)), TIMEOUT)
        assert_unwatched(loop, client.fileno())


def test_cancel_of_recv_on_closed_socket_removes_its_reader(loop, pair):
    a, _ = pair
    fd = a.fileno()

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.02)
        a.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main(), TIMEOUT)
    assert_unwatched(loop, fd)


CLOSING_A_WATCHED_FD = (
    "asyncio's selector keeps a closed fd's registration and never polls the socket that "
    "reuses the number: closing a socket while an operation on it waits is unsupported there"
)


@pytest.mark.oxloop_only(CLOSING_A_WATCHED_FD)
def test_sock_recv_whose_socket_is_closed_never_reads_the_reused_fd(loop):
    # A sock_recv left waiting on a socket closed meanwhile fails with EBADF, as the socket's
    # recv would, when its fd number is reused and reported readable; the data stays there
    # for the new owner.
    async def main():
        a, b = map(nonblocking, socket.socketpair())
        fd = a.fileno()
        with b:
            stale = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0.01)
            a.close()
            c, d = map(nonblocking, socket.socketpair())
            with c, d:
                if c.fileno() != fd:
                    pytest.skip("the fd number was not reused")
                readable = loop.create_future()
                loop.add_writer(c, lambda: None)  # watches the number again, for writing
                d.send(b"new")
                loop.call_later(0.01, readable.set_result, None)
                with pytest.raises(OSError) as failure:
                    await stale
                assert failure.value.errno == errno.EBADF
                await readable
                loop.remove_writer(c)
                assert c.recv(100) == b"new"

    run(loop, main(), TIMEOUT)


@pytest.mark.parametrize(
    "order",
    [
        "cancelled_then_closed",
        pytest.param(
            "closed_at_once_after_cancel", marks=pytest.mark.oxloop_only(CLOSING_A_WATCHED_FD)
        ),
        pytest.param("closed_before_cancel", marks=pytest.mark.oxloop_only(CLOSING_A_WATCHED_FD)),
    ],
)
def test_cancelled_connects_never_touch_the_socket_that_reuses_their_fd(
    loop, listener, stalled_address, order
):
    # A cancelled connect whose fd number is reused by a new connection must neither remove the
    # new connection's watch (its connect or recv would hang) nor run its own callback for it;
    # every new connection gets exactly the bytes its server side sent. Loopback connects are
    # always in progress at first, so the new connect is watched on the reused number.
    #  - cancelled_then_closed: the cancelled task has finished before the socket is closed;
    #  - closed_at_once_after_cancel: the new connect registers before the loop runs anything
    #    else, so before any clean-up the cancel could have scheduled;
    #  - closed_before_cancel: the cancel comes while the new connect is watched on the number.
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    server_address = listener.getsockname()

    async def main():
        reused = 0
        for i in range(20):
            stale = nonblocking(socket.socket())
            fd = stale.fileno()
            task = asyncio.ensure_future(loop.sock_connect(stale, stalled_address))
            await asyncio.sleep(0)  # the connect is in progress and watched now
            if order == "cancelled_then_closed":
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            elif order == "closed_at_once_after_cancel":
                task.cancel()
            stale.close()
            fresh = nonblocking(socket.socket())
            reused += fresh.fileno() == fd
            with fresh:
                if order == "closed_before_cancel":
                    connect = asyncio.ensure_future(loop.sock_connect(fresh, server_address))
                    await asyncio.sleep(0)  # the new connect is watched on the reused fd now
                    task.cancel()
                    await connect
                else:
                    await loop.sock_connect(fresh, server_address)
                conn, _ = await loop.sock_accept(listener)
                with conn:
                    await loop.sock_sendall(conn, b"reply %d" % i)
                    assert await loop.sock_recv(fresh, 100) == b"reply %d" % i
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_unwatched(loop, fd)
        return reused

    assert run(loop, main(), TIMEOUT) == 20
    assert errors == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_socket_operations_leak_no_fds(loop, stalled_address):
    async def main():
        for _ in range(10):
            with nonblocking(socket.create_server(("127.0.0.1", 0))) as server:
                with nonblocking(socket.socket()) as client:
                    await loop.sock_connect(client, server.getsockname())
                    conn, _ = await loop.sock_accept(server)
                    with conn:
                        await loop.sock_sendall(client, b"x" * 1000)
                        await loop.sock_recv(conn, 1000)
                with nonblocking(socket.socket()) as stalled:
                    await cancel_while_waiting(loop.sock_connect(stalled, stalled_address))

    run(loop, asyncio.sleep(0), TIMEOUT)  # anything created lazily on first run exists now
    before = fd_count()
    run(loop, main(), TIMEOUT)
    assert fd_count() == before


# --- sendfile -------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = payload(1024 * 1024 + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        yield f, data


async def receive_all(loop, sock):
    got = bytearray()
    while chunk := await loop.sock_recv(sock, 65536):
        got += chunk
    return bytes(got)


def sendfile_through(loop, pair, file, *args, **kwargs):
    """sock_sendfile from one end of `pair`, read at the other end; (result, bytes received)."""
    a, b = pair

    async def main():
        reader = asyncio.ensure_future(receive_all(loop, b))
        try:
            sent = await loop.sock_sendfile(a, file, *args, **kwargs)
        except BaseException:
            reader.cancel()  # nothing will come: don't leave it waiting
            await asyncio.wait([reader])
            raise
        a.shutdown(socket.SHUT_WR)
        return sent, await reader

    return run(loop, main(), TIMEOUT)


@pytest.fixture
def stream_pair():
    a, b = socket.socketpair()  # AF_UNIX SOCK_STREAM: sendfile(2) works on it
    shrink_buffers(a)
    shrink_buffers(b)
    yield nonblocking(a), nonblocking(b)
    a.close()
    b.close()


def test_sock_sendfile_whole_file(loop, stream_pair, data_file):
    f, data = data_file
    assert sendfile_through(loop, stream_pair, f) == (len(data), data)
    assert f.tell() == len(data)
    assert_unwatched(loop, stream_pair[0].fileno())


def test_sock_sendfile_offset_and_count(loop, stream_pair, data_file):
    f, data = data_file
    assert sendfile_through(loop, stream_pair, f, 1000, 300_000) == (300_000, data[1000:301_000])
    assert f.tell() == 301_000


def test_sock_sendfile_offset_to_eof(loop, stream_pair, data_file):
    f, data = data_file
    offset = len(data) - 5000
    assert sendfile_through(loop, stream_pair, f, offset) == (5000, data[offset:])
    assert f.tell() == len(data)


def test_sock_sendfile_count_past_eof_sends_the_rest(loop, stream_pair, data_file):
    f, data = data_file
    offset = len(data) - 10
    assert sendfile_through(loop, stream_pair, f, offset, 100) == (10, data[-10:])


def test_sock_sendfile_empty_file_sends_nothing(loop, stream_pair, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert sendfile_through(loop, stream_pair, f) == (0, b"")


def test_sock_sendfile_falls_back_for_a_file_without_fd(loop, stream_pair):
    data = payload(600_000)
    f = io.BytesIO(data)
    assert sendfile_through(loop, stream_pair, f, 10, 500_000) == (500_000, data[10:500_010])
    assert f.tell() == 500_010


def test_sock_sendfile_without_fallback_raises(loop, stream_pair):
    with pytest.raises(asyncio.SendfileNotAvailableError):
        sendfile_through(loop, stream_pair, io.BytesIO(b"data"), fallback=False)


def test_sock_sendfile_to_a_reset_connection_raises_connection_error(loop, listener, data_file):
    # sendfile(2) fails before sending anything; the fallback's send then reports the error.
    f, _ = data_file

    async def main():
        with nonblocking(socket.socket()) as client:
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await loop.sock_accept(listener)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()
            await asyncio.sleep(0.02)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await loop.sock_sendfile(client, f)

    run(loop, main(), TIMEOUT)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"count": 0}, ValueError, r"count must be a positive integer \(got 0\)"),
        ({"count": "1"}, TypeError, r"count must be a positive integer \(got '1'\)"),
        ({"offset": -1}, ValueError, r"offset must be a non-negative integer \(got -1\)"),
        ({"offset": 1.5}, TypeError, r"offset must be a non-negative integer \(got 1.5\)"),
    ],
)
def test_sock_sendfile_checks_offset_and_count(loop, pair, data_file, kwargs, error, message):
    with pytest.raises(error, match=message):
        run(loop, loop.sock_sendfile(pair[0], data_file[0], **kwargs), TIMEOUT)


def test_sock_sendfile_refuses_text_files(loop, pair, tmp_path):
    path = tmp_path / "text"
    path.write_text("text")
    with open(path) as f, pytest.raises(ValueError, match="file should be opened in binary mode"):
        run(loop, loop.sock_sendfile(pair[0], f), TIMEOUT)


def test_sock_sendfile_refuses_datagram_sockets(loop, udp_pair, data_file):
    with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
        run(loop, loop.sock_sendfile(udp_pair[0], data_file[0]), TIMEOUT)


def test_cancelled_sock_sendfile_leaves_no_writer(loop, stream_pair, data_file):
    a, _ = stream_pair
    run(loop, cancel_while_waiting(loop.sock_sendfile(a, data_file[0])), TIMEOUT)
    assert_unwatched(loop, a.fileno())


@pytest.mark.oxloop_only(
    "asyncio's docs say the file position is always updated, but after a cancel it is not"
)
def test_cancelled_sock_sendfile_sets_file_position_after_bytes_sent(loop, stream_pair, data_file):
    a, b = stream_pair
    f, data = data_file
    run(loop, cancel_while_waiting(loop.sock_sendfile(a, f)), TIMEOUT)
    a.shutdown(socket.SHUT_WR)
    # Some bytes went out before the buffers filled; the position is just after them.
    received = run(loop, receive_all(loop, b), TIMEOUT)
    assert 0 < len(received) < len(data)
    assert f.tell() == len(received)


@pytest.mark.parametrize(
    "call",
    [
        lambda loop, sock: loop.sock_recv(sock, 10),
        lambda loop, sock: loop.sock_recv_into(sock, bytearray(10)),
        lambda loop, sock: loop.sock_recvfrom(sock, 10),
        lambda loop, sock: loop.sock_recvfrom_into(sock, bytearray(10)),
        lambda loop, sock: loop.sock_sendall(sock, b"data"),
        lambda loop, sock: loop.sock_sendto(sock, b"data", ("127.0.0.1", 9)),
        lambda loop, sock: loop.sock_accept(sock),
        lambda loop, sock: loop.sock_connect(sock, ("127.0.0.1", 9)),
    ],
    ids=[
        "recv",
        "recv_into",
        "recvfrom",
        "recvfrom_into",
        "sendall",
        "sendto",
        "accept",
        "connect",
    ],
)
def test_sock_call_on_a_closed_socket_raises_ebadf(loop, call):
    """A closed socket fails with OSError(EBADF), as the socket call asyncio makes first does
    (found by the fuzzer: oxloop's fd check raised ValueError for its fd -1)."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.close()
    with pytest.raises(OSError) as failure:
        loop.run_until_complete(call(loop, sock))
    assert failure.value.errno == errno.EBADF
