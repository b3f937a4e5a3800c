"""Pipes (`connect_read_pipe`, `connect_write_pipe`) and subprocesses, on both loops."""

import asyncio
import os
import signal
import sys

from nethelpers import fd_count, run


class PipeRecorder(asyncio.Protocol):
    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.lost = self.loop.create_future()

    def connection_made(self, transport):
        self.events.append("connection_made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof_received")

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        self.lost.set_result(exc)


def test_read_pipe_delivers_data_then_eof_then_connection_lost(loop):
    async def main():
        before = fd_count()
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_read_pipe(PipeRecorder, os.fdopen(rfd, "rb", 0))
        os.write(wfd, b"through the pipe")
        os.close(wfd)
        assert await proto.lost is None
        assert bytes(proto.data) == b"through the pipe"
        assert proto.events == ["connection_made", "eof_received", "connection_lost"]
        assert transport.is_closing()
        await asyncio.sleep(0)
        assert fd_count() == before

    run(loop, main())


def test_write_pipe_sends_everything_and_closes(loop):
    async def main():
        rfd, wfd = os.pipe()
        transport, proto = await loop.connect_write_pipe(PipeRecorder, os.fdopen(wfd, "wb", 0))
        payload = b"x" * (1 << 20)  # larger than the pipe buffer: needs writable events
        transport.write(payload)
        reader = os.fdopen(rfd, "rb", 0)
        received = bytearray()
        while len(received) < len(payload):
            chunk = await loop.run_in_executor(None, reader.read, 1 << 16)
            received += chunk
        transport.close()
        assert await proto.lost is None
        reader.close()
        assert bytes(received) == payload

    run(loop, main())


def test_subprocess_exec_communicate(loop):
    async def main():
        code = "import sys; sys.stdout.write(sys.stdin.read().upper())"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"shout")
        assert (out, err, proc.returncode) == (b"SHOUT", None, 0)

    run(loop, main())


def test_subprocess_shell_exit_status_and_stderr(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo oops >&2; exit 3", stderr=asyncio.subprocess.PIPE
        )
        assert await proc.stderr.read() == b"oops\n"
        assert await proc.wait() == 3

    run(loop, main())


def test_subprocess_terminate_reports_the_signal(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        proc.terminate()
        assert await proc.wait() == -signal.SIGTERM

    run(loop, main())


def test_subprocess_line_by_line_output(loop):
    async def main():
        code = "for i in range(3): print('line', i, flush=True)"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        lines = [line async for line in proc.stdout]
        assert lines == [b"line 0\n", b"line 1\n", b"line 2\n"]
        assert await proc.wait() == 0

    run(loop, main())
