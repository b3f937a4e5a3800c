"""`loop.sendfile(transport, file, offset, count, fallback)`: a file sent over a transport.

On a plain TCP transport both loops use `os.sendfile` (the native path, so `fallback=False`
works); on a TLS transport only the fallback (read the file, write it through the transport)
can work. The specification: the receiver gets exactly the bytes asked for, the file position
ends after the last byte sent, the transport refuses writes while the file is on its way and
reads and writes normally afterwards, and bad arguments raise asyncio's errors. Every test runs
on stock asyncio (the oracle) and on oxloop. Loopback only.
"""

import asyncio
import io

import pytest
from nethelpers import (
    Accepted,
    RecordingProtocol,
    payload,
    run,
    set_linger_zero,
    shrink_buffers,
)
from tlshelpers import SERVER_HOSTNAME

SIZE = 3 * 1024 * 1024 + 12345  # a few MiB, not a multiple of any block size
DATA = payload(SIZE, seed=b"sendfile")
BIG = 16 * 1024 * 1024  # more than loopback buffers hold while the receiver does not read


@pytest.fixture
def big_file(tmp_path):
    """A regular file of BIG zero bytes (sparse), opened for reading in binary mode."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(BIG)
    with open(path, "rb") as f:
        yield f


@pytest.fixture
def data_file(tmp_path):
    """A regular file holding DATA, opened for reading in binary mode."""
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


async def sender_and_receiver(**connect_kwargs):
    """A RecordingProtocol server and a RecordingProtocol client connected to it.

    Returns (server, client transport, client protocol, server protocol).
    """
    loop = asyncio.get_running_loop()
    accepted = Accepted()
    server_kwargs = {}
    if "ssl" in connect_kwargs:
        server_kwargs["ssl"] = connect_kwargs.pop("server_ssl")
    server = await loop.create_server(accepted, "127.0.0.1", 0, **server_kwargs)
    port = server.sockets[0].getsockname()[1]
    transport, proto = await loop.create_connection(
        RecordingProtocol, "127.0.0.1", port, **connect_kwargs
    )
    receiver = await accepted.next()
    await receiver.made
    return server, transport, proto, receiver


def start(coro):
    """A task for `coro` whose exception counts as retrieved even if the test fails before
    awaiting it (an unretrieved one is logged, with a traceback, from the task's finalizer)."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def close_all(server, transport, proto):
    transport.close()
    await proto.lost
    server.close()
    await server.wait_closed()


# --- plain TCP: the native path ------------------------------------------------------------


def test_sendfile_sends_the_whole_file(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        sent = await loop.sendfile(transport, data_file)
        assert sent == SIZE
        assert data_file.tell() == SIZE
        assert await receiver.wait_bytes(SIZE) == DATA
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_from_an_offset_sends_the_rest(loop, data_file):
    offset = 1000

    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        sent = await loop.sendfile(transport, data_file, offset)
        assert sent == SIZE - offset
        assert data_file.tell() == SIZE
        assert await receiver.wait_bytes(SIZE - offset) == DATA[offset:]
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_with_a_count_sends_exactly_count_bytes(loop, data_file):
    offset, count = 4321, 1024 * 1024 + 7

    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        sent = await loop.sendfile(transport, data_file, offset, count)
        assert sent == count
        assert data_file.tell() == offset + count
        transport.write(b"END")  # nothing more than `count` bytes of the file went out
        assert await receiver.wait_bytes(count + 3) == DATA[offset : offset + count] + b"END"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_count_past_the_end_stops_at_eof(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        sent = await loop.sendfile(transport, data_file, SIZE - 10, 1000)
        assert sent == 10
        assert data_file.tell() == SIZE
        assert await receiver.wait_bytes(10) == DATA[-10:]
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_without_fallback_works_on_a_plain_tcp_transport(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        sent = await loop.sendfile(transport, data_file, fallback=False)
        assert sent == SIZE
        assert await receiver.wait_bytes(SIZE) == DATA
        await close_all(server, transport, proto)

    run(loop, main())


async def fill_until_buffered(transport):
    """Write until the transport has to keep some bytes in user space (the peer does not
    read); returns what was written."""
    written = bytearray()
    chunk = payload(64 * 1024, seed=b"head")
    while transport.get_write_buffer_size() == 0:
        assert len(written) < 64 * 1024 * 1024, "peer kept accepting data it does not read"
        transport.write(chunk)
        written += chunk
    return bytes(written)


def test_sendfile_waits_for_buffered_writes_and_keeps_the_order(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        shrink_buffers(receiver.transport.get_extra_info("socket"))
        receiver.transport.pause_reading()
        head = await fill_until_buffered(transport)
        sendfile = start(loop.sendfile(transport, data_file, 0, 1000))
        await asyncio.sleep(0.01)
        assert not sendfile.done()  # waits for the buffer to drain first
        receiver.transport.resume_reading()
        assert await sendfile == 1000
        transport.write(b"TAIL")
        expected = head + DATA[:1000] + b"TAIL"
        assert await receiver.wait_bytes(len(expected)) == expected
        await close_all(server, transport, proto)

    run(loop, main())


def test_write_while_sendfile_waits_for_buffered_writes_raises_runtime_error(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        shrink_buffers(receiver.transport.get_extra_info("socket"))
        receiver.transport.pause_reading()
        head = await fill_until_buffered(transport)
        sendfile = start(loop.sendfile(transport, data_file, 0, 1000))
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="unable to write; sendfile is in progress"):
            transport.write(b"interleaved")
        receiver.transport.resume_reading()
        assert await sendfile == 1000
        assert await receiver.wait_bytes(len(head) + 1000) == head + DATA[:1000]
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_native_path_waits_for_a_slow_reader(loop, big_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        shrink_buffers(transport.get_extra_info("socket"))
        shrink_buffers(receiver.transport.get_extra_info("socket"))
        receiver.transport.pause_reading()  # the file cannot all go out at once
        sendfile = start(loop.sendfile(transport, big_file, fallback=False))
        await asyncio.sleep(0.05)
        assert not sendfile.done()
        receiver.transport.resume_reading()
        assert await sendfile == BIG
        assert big_file.tell() == BIG
        assert await receiver.wait_bytes(BIG) == bytes(BIG)
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_then_the_transport_reads_and_writes_as_before(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        assert transport.is_reading()
        assert await loop.sendfile(transport, data_file, 0, 5000) == 5000
        assert transport.is_reading()
        transport.write(b"after")
        assert await receiver.wait_bytes(5005) == DATA[:5000] + b"after"
        receiver.transport.write(b"pong")
        assert await proto.wait_bytes(4) == b"pong"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_keeps_reading_paused_if_it_was_paused(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        transport.pause_reading()
        assert await loop.sendfile(transport, data_file, 0, 5000) == 5000
        assert not transport.is_reading()
        transport.resume_reading()
        receiver.transport.write(b"pong")
        assert await proto.wait_bytes(4) == b"pong"
        await close_all(server, transport, proto)

    run(loop, main())


def test_write_while_sendfile_is_in_progress_raises_runtime_error(loop, big_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        shrink_buffers(transport.get_extra_info("socket"))
        shrink_buffers(receiver.transport.get_extra_info("socket"))
        receiver.transport.pause_reading()  # the file cannot all go out at once
        sendfile = start(loop.sendfile(transport, big_file))
        await asyncio.sleep(0.05)
        assert not sendfile.done()
        assert not transport.is_reading()  # reading is paused while the file goes out
        with pytest.raises(RuntimeError, match="unable to write; sendfile is in progress"):
            transport.write(b"interleaved")
        # 3.12+ names the method: "unable to writelines; ..."
        with pytest.raises(RuntimeError, match="unable to write(lines)?; sendfile is in progress"):
            transport.writelines([b"interleaved"])
        receiver.transport.resume_reading()
        assert await sendfile == BIG
        assert transport.is_reading()
        transport.write(b"after")
        assert await receiver.wait_bytes(BIG + 5) == bytes(BIG) + b"after"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_to_a_peer_that_resets_raises_connection_error(loop, big_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        shrink_buffers(transport.get_extra_info("socket"))
        receiver_sock = receiver.transport.get_extra_info("socket")
        shrink_buffers(receiver_sock)
        receiver.transport.pause_reading()
        sendfile = start(loop.sendfile(transport, big_file))
        await asyncio.sleep(0.05)
        set_linger_zero(receiver_sock)
        receiver.transport.abort()  # RST: the sender's next sendfile(2) fails
        with pytest.raises(ConnectionError):
            await sendfile
        assert 0 < big_file.tell() < BIG  # the position says how much went out
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


# --- TLS: only the fallback ----------------------------------------------------------------


def test_sendfile_over_tls_uses_the_fallback(loop, tls, data_file):
    offset, count = 777, 2 * 1024 * 1024

    async def main():
        server, transport, proto, receiver = await sender_and_receiver(
            ssl=tls.client_context(),
            server_hostname=SERVER_HOSTNAME,
            server_ssl=tls.server_context(),
        )
        sent = await loop.sendfile(transport, data_file, offset, count)
        assert sent == count
        assert data_file.tell() == offset + count
        assert await receiver.wait_bytes(count) == DATA[offset : offset + count]
        transport.write(b"after")
        assert await receiver.wait_bytes(count + 5) == DATA[offset : offset + count] + b"after"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_over_tls_without_fallback_raises_runtime_error(loop, tls, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver(
            ssl=tls.client_context(),
            server_hostname=SERVER_HOSTNAME,
            server_ssl=tls.server_context(),
        )
        # A TLS transport declares only the fallback mode, so asyncio does not even try the
        # native path: the error is RuntimeError, not SendfileNotAvailableError.
        with pytest.raises(RuntimeError, match="fallback is disabled"):
            await loop.sendfile(transport, data_file, fallback=False)
        assert data_file.tell() == 0
        transport.write(b"still usable")
        assert await receiver.wait_bytes(12) == b"still usable"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_of_a_file_without_fd_falls_back_unless_told_not_to(loop):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        source = io.BytesIO(DATA[:100_000])
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(transport, source, fallback=False)
        assert transport.is_reading()
        assert await loop.sendfile(transport, source, 10) == 100_000 - 10
        assert source.tell() == 100_000
        assert await receiver.wait_bytes(100_000 - 10) == DATA[10:100_000]
        await close_all(server, transport, proto)

    run(loop, main())


# --- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"offset": -1}, ValueError, "offset must be a non-negative integer"),
        ({"offset": 1.5}, TypeError, "offset must be a non-negative integer"),
        ({"count": 0}, ValueError, "count must be a positive integer"),
        ({"count": -5}, ValueError, "count must be a positive integer"),
        ({"count": 2.0}, TypeError, "count must be a positive integer"),
    ],
    ids=["negative-offset", "float-offset", "zero-count", "negative-count", "float-count"],
)
def test_sendfile_bad_arguments_raise_asyncio_errors(loop, data_file, kwargs, error, message):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        with pytest.raises(error, match=message):
            await loop.sendfile(transport, data_file, **kwargs)
        # The failed call left the transport as it was.
        assert transport.is_reading()
        transport.write(b"ok")
        assert await receiver.wait_bytes(2) == b"ok"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_of_a_text_mode_file_raises_value_error(loop, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("not binary\n")

    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        with open(path) as f:
            with pytest.raises(ValueError, match="file should be opened in binary mode"):
                await loop.sendfile(transport, f)
        transport.write(b"ok")
        assert await receiver.wait_bytes(2) == b"ok"
        await close_all(server, transport, proto)

    run(loop, main())


def test_sendfile_on_a_closing_transport_raises_runtime_error(loop, data_file):
    async def main():
        server, transport, proto, receiver = await sender_and_receiver()
        transport.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(transport, data_file)
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_sendfile_on_a_transport_without_support_raises_runtime_error(loop, data_file):
    class NotSendfileCapable(asyncio.Transport):
        def is_closing(self):
            return False

    async def main():
        with pytest.raises(RuntimeError, match="sendfile is not supported for transport"):
            await loop.sendfile(NotSendfileCapable(), data_file)

    run(loop, main())
