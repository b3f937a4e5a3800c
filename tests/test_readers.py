"""File-descriptor watching: add_reader / remove_reader / add_writer / remove_writer.

Covers: readers called when data arrives (with args, level-triggered), writers called when
writable, reader and writer on one fd, replacing a callback, the True/False results of remove_*,
fd arguments (ints, objects with fileno(), invalid ones), a closed loop, removing a watcher after
its fd was closed, and that loops and watchers leak no file descriptors.
"""

import asyncio
import errno
import gc
import os
import socket

import pytest

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def settle(seconds=0.05):
    """Let the loop poll a few times, so an extra (wrong) callback would show up."""
    await asyncio.sleep(seconds)


def test_reader_called_when_data_arrives(loop, pair):
    a, b = pair
    got = []
    fut = loop.create_future()

    def on_readable(tag):
        got.append((tag, a.recv(100)))
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(a.fileno(), on_readable, "tag")

    async def main():
        await settle()
        assert got == []  # nothing to read yet
        b.send(b"hello")
        await asyncio.wait_for(fut, 5)
        await settle()

    try:
        loop.run_until_complete(main())
    finally:
        loop.remove_reader(a.fileno())
    assert got == [("tag", b"hello")]


def test_reader_is_level_triggered(loop, pair):
    a, b = pair
    got = []

    def read_one_byte():
        got.append(a.recv(1))

    loop.add_reader(a.fileno(), read_one_byte)

    async def main():
        b.send(b"abcde")
        for _ in range(500):
            if len(got) >= 5:
                break
            await asyncio.sleep(0.001)
        await settle()  # drained: no further calls

    try:
        loop.run_until_complete(main())
    finally:
        loop.remove_reader(a.fileno())
    assert got == [b"a", b"b", b"c", b"d", b"e"]


def test_remove_reader_returns_true_then_false(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a.fileno()) is False
    loop.add_reader(a.fileno(), lambda: None)
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False


def test_remove_writer_returns_true_then_false(loop, pair):
    a, _ = pair
    assert loop.remove_writer(a.fileno()) is False
    loop.add_writer(a.fileno(), lambda: None)
    assert loop.remove_writer(a.fileno()) is True
    assert loop.remove_writer(a.fileno()) is False


def test_removed_reader_is_not_called(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a.fileno(), got.append, "called")
    assert loop.remove_reader(a.fileno()) is True
    b.send(b"x")
    loop.run_until_complete(settle())
    assert got == []


class FileLike:
    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()


@pytest.mark.parametrize("wrap", ["socket", "object with fileno()"])
def test_add_reader_accepts_objects_with_fileno(loop, pair, wrap):
    a, b = pair
    fileobj = a if wrap == "socket" else FileLike(a)
    fut = loop.create_future()
    loop.add_reader(fileobj, lambda: fut.done() or fut.set_result(a.recv(10)))
    b.send(b"obj")
    assert loop.run_until_complete(asyncio.wait_for(fut, 5)) == b"obj"
    assert loop.remove_reader(fileobj) is True
    assert loop.remove_reader(a.fileno()) is False  # the object and its fd are the same key


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_invalid_fd_raises_value_error(loop, method):
    with pytest.raises(ValueError):
        getattr(loop, method)(-1, lambda: None)


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
@pytest.mark.parametrize("bad", [object(), "3", 1.5], ids=["object", "str", "float"])
def test_object_without_fileno_raises_value_error(loop, method, bad):
    args = (bad, lambda: None) if method.startswith("add") else (bad,)
    with pytest.raises(ValueError):
        getattr(loop, method)(*args)


def test_writer_called_when_writable(loop, pair):
    a, _ = pair
    fut = loop.create_future()

    def on_writable(x, y):
        loop.remove_writer(a.fileno())
        fut.set_result(x + y)

    loop.add_writer(a.fileno(), on_writable, 1, 2)
    assert loop.run_until_complete(asyncio.wait_for(fut, 5)) == 3


def test_writer_not_called_when_buffer_full(loop, pair):
    a, b = pair
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    writable = loop.create_future()
    loop.add_writer(a.fileno(), lambda: writable.done() or writable.set_result(None))

    async def main():
        await settle()
        assert not writable.done()  # send buffer full: not writable
        while True:  # drain the peer
            try:
                if not b.recv(1 << 20):
                    break
            except BlockingIOError:
                break
        await asyncio.wait_for(writable, 5)

    try:
        loop.run_until_complete(main())
    finally:
        loop.remove_writer(a.fileno())


def test_reader_and_writer_on_same_fd(loop, pair):
    a, b = pair
    events = []
    readable = loop.create_future()
    writable = loop.create_future()

    def on_write():
        events.append("write")
        loop.remove_writer(a.fileno())
        writable.set_result(None)

    def on_read():
        events.append(("read", a.recv(10)))
        readable.set_result(None)

    loop.add_reader(a.fileno(), on_read)
    loop.add_writer(a.fileno(), on_write)

    async def main():
        await asyncio.wait_for(writable, 5)
        assert events == ["write"]  # the reader stays registered, with nothing to read
        b.send(b"both")
        await asyncio.wait_for(readable, 5)
        await settle()

    try:
        loop.run_until_complete(main())
    finally:
        assert loop.remove_reader(a.fileno()) is True
        assert loop.remove_writer(a.fileno()) is False
    assert events == ["write", ("read", b"both")]


def test_removing_writer_keeps_reader(loop, pair):
    a, b = pair
    got = loop.create_future()
    loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(10)))
    loop.add_writer(a.fileno(), lambda: None)
    assert loop.remove_writer(a.fileno()) is True
    b.send(b"still")
    try:
        assert loop.run_until_complete(asyncio.wait_for(got, 5)) == b"still"
    finally:
        assert loop.remove_reader(a.fileno()) is True


def test_add_reader_again_replaces_callback(loop, pair):
    a, b = pair
    calls = []
    done = loop.create_future()

    def old():
        calls.append("old")
        a.recv(10)

    def new():
        calls.append("new")
        a.recv(10)
        done.set_result(None)

    loop.add_reader(a.fileno(), old)
    loop.add_reader(a.fileno(), new)
    b.send(b"x")
    try:
        loop.run_until_complete(asyncio.wait_for(done, 5))
        loop.run_until_complete(settle())
    finally:
        assert loop.remove_reader(a.fileno()) is True
    assert calls == ["new"]


def test_add_writer_again_replaces_callback(loop, pair):
    a, _ = pair
    calls = []
    done = loop.create_future()

    def new():
        calls.append("new")
        loop.remove_writer(a.fileno())
        done.set_result(None)

    loop.add_writer(a.fileno(), calls.append, "old")
    loop.add_writer(a.fileno(), new)
    loop.run_until_complete(asyncio.wait_for(done, 5))
    assert calls == ["new"]


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_on_closed_loop_raises(loop, pair, method):
    a, _ = pair
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        getattr(loop, method)(a.fileno(), lambda: None)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_watching_a_closed_fd_raises_oserror_with_its_errno(loop, method):
    sock, other = socket.socketpair()
    fd = sock.fileno()
    sock.close()
    other.close()
    with pytest.raises(OSError) as caught:
        getattr(loop, method)(fd, lambda: None)
    assert caught.value.errno == errno.EBADF
    assert caught.value.strerror == os.strerror(errno.EBADF)


def test_remove_reader_after_fd_closed(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, lambda: None)
    a.close()
    try:
        assert loop.remove_reader(fd) is True
        loop.run_until_complete(settle(0.01))  # the loop keeps working
    finally:
        b.close()


@pytest.mark.parametrize("side", ["reader", "writer"])
def test_remove_watcher_by_socket_closed_since(loop, side):
    # anyio's raw-socket streams do this: aclose() closes the socket, then the wait's done
    # callback removes the watcher with the socket object, whose fileno() is now -1.
    a, b = socket.socketpair()
    add, remove = getattr(loop, "add_" + side), getattr(loop, "remove_" + side)
    add(a, lambda: None)
    a.close()
    try:
        assert remove(a) is True
        with pytest.raises(ValueError):
            remove(a)  # no longer registered: nothing to find it by
        loop.run_until_complete(settle(0.01))
    finally:
        b.close()


def test_closed_socket_finds_only_its_own_registration(loop):
    a, b = socket.socketpair()
    loop.add_reader(FileLike(a), lambda: None)
    a.close()
    try:
        with pytest.raises(ValueError):
            loop.remove_reader(a)  # registered through another object
    finally:
        b.close()


needs_proc_fd = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to count open fds"
)


def open_fd_count():
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@needs_proc_fd
def test_loop_life_leaks_no_fds(loop_factory):
    before = open_fd_count()
    for _ in range(20):
        lp = loop_factory()
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    assert open_fd_count() == before


@needs_proc_fd
def test_watched_fd_life_leaks_no_fds(loop_factory):
    before = open_fd_count()
    lp = loop_factory()
    try:
        for _ in range(20):
            a, b = socket.socketpair()
            fut = lp.create_future()
            lp.add_reader(a.fileno(), lambda a=a, fut=fut: fut.set_result(a.recv(10)))
            lp.add_writer(b.fileno(), lambda: None)
            b.send(b"ping")
            assert lp.run_until_complete(fut) == b"ping"
            assert lp.remove_reader(a.fileno()) is True
            assert lp.remove_writer(b.fileno()) is True
            a.close()
            b.close()
    finally:
        lp.close()
    assert open_fd_count() == before


class _FilenoRaises:
    def __init__(self, exc):
        self.exc = exc

    def fileno(self):
        raise self.exc


@pytest.mark.parametrize(
    ("fileobj", "error"),
    [
        ("text", ValueError),
        (_FilenoRaises(ValueError()), ValueError),
        (_FilenoRaises(OSError()), OSError),
    ],
    ids=["str", "fileno-valueerror", "fileno-oserror"],
)
@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_bad_file_object_on_closed_loop_raises_before_the_closed_check(
    loop, method, fileobj, error
):
    # asyncio asks the object for its fd first (ValueError for no usable fileno(), fileno()'s
    # own error otherwise), then refuses a closed loop (add) or answers False (remove).
    loop.close()
    args = (fileobj, lambda: None) if method.startswith("add") else (fileobj,)
    with pytest.raises(error):
        getattr(loop, method)(*args)


@pytest.mark.parametrize("fd", [-1, 2**40])
def test_any_int_on_closed_loop_is_refused_as_closed_or_not_watched(loop, fd):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_reader(fd, lambda: None)
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_fd_number_never_opened_raises_ebadf_without_sizing_anything(loop, method):
    # Used to abort the whole process: the fd table grew to the number given before the kernel
    # was asked ("memory allocation of 103079215104 bytes failed").
    with pytest.raises(OSError) as caught:
        getattr(loop, method)(2**31 - 1, lambda: None)
    assert caught.value.errno == errno.EBADF
    assert loop.remove_reader(2**31 - 1) is False
    assert loop.remove_writer(2**31 - 1) is False


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize("fd", [2**31, 2**40, 2**70], ids=["2**31", "2**40", "2**70"])
def test_fd_number_beyond_a_c_int_raises_overflow_error(loop, method, fd):
    with pytest.raises(OverflowError):
        getattr(loop, method)(fd, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_removing_an_fd_number_beyond_a_c_int_finds_nothing(loop, method):
    assert getattr(loop, method)(2**40) is False


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
@pytest.mark.parametrize("fd", [-1, -(2**40), -(2**70)], ids=["-1", "-2**40", "-2**70"])
def test_negative_fd_raises_value_error(loop, method, fd):
    args = (fd, lambda: None) if method.startswith("add") else (fd,)
    with pytest.raises(ValueError, match="Invalid file descriptor"):
        getattr(loop, method)(*args)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize(
    "raised, expected",
    [
        (OSError(errno.EBADF, "closed"), OSError),
        (ValueError("closed"), ValueError),
        (AttributeError("no fd"), ValueError),
        (TypeError("no fd"), ValueError),
        (RuntimeError("boom"), RuntimeError),
    ],
    ids=["OSError", "ValueError", "AttributeError", "TypeError", "RuntimeError"],
)
def test_fileno_that_raises(loop, method, raised, expected):
    # asyncio turns AttributeError, TypeError and ValueError from fileno() into "Invalid file
    # object" (a ValueError) and lets anything else through.
    with pytest.raises(expected) as caught:
        getattr(loop, method)(_FilenoRaises(raised), lambda: None)
    if expected is ValueError:
        assert "Invalid file object" in str(caught.value)
    else:
        assert caught.value is raised


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_fileno_beyond_a_c_int_raises_overflow_error(loop, method):
    class Huge:
        def fileno(self):
            return 2**40

    with pytest.raises(OverflowError):
        getattr(loop, method)(Huge(), lambda: None)
