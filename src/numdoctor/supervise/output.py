"""The program's stdout and stderr: delivered byte for byte, in order, and watched.

The program must see the same kind of stream it would see without numdoctor, because Python,
C stdio and many libraries change behaviour on it (line buffering and colours on a terminal,
block buffering on a pipe). So each of our own output streams is handled by what it is:

- a regular file (`> log 2>&1`) or /dev/null: passed through untouched. Zero overhead; we
  watch the file's size for progress and read its tail afterwards.
- a terminal: the program gets a pseudo-terminal in raw mode (no newline translation) with
  the same window size, and we copy its bytes to the real terminal.
- anything else (a pipe, a socket): the program gets a pipe and we copy.

When stdout and stderr are the same terminal or pipe (`2>&1`, or both on one terminal), one
channel carries both, so their relative order is exactly what the program wrote. Copying is
done by one thread per channel with 64 KiB reads; it keeps a bounded tail and feeds the
message scanner. Everything the program wrote is drained before numdoctor exits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable

TAIL_BYTES = 64 * 1024
# How much of an inherited stderr file is scanned for known messages after the run.
FILE_SCAN_BYTES = 8 * 1024 * 1024
_CHUNK = 65536


class Tail:
    """The last `limit` bytes of a stream."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._data = bytearray()

    def add(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > 2 * self.limit:
            del self._data[: len(self._data) - self.limit]

    def bytes(self) -> bytes:
        return bytes(self._data[-self.limit:])


def _kind(fd: int) -> tuple[str, tuple[int, int, int] | None]:
    """("tty" | "file" | "null" | "stream" | "closed", identity of the sink)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return "closed", None
    identity = (st.st_dev, st.st_ino, st.st_rdev)
    if os.isatty(fd):
        return "tty", identity
    if stat.S_ISREG(st.st_mode):
        return "file", identity
    if stat.S_ISCHR(st.st_mode):  # /dev/null and other devices: nothing to observe
        return "null", identity
    return "stream", identity


class Channel:
    """One interposed stream: the program writes into it, a thread copies to `dest`."""

    def __init__(self, kind: str, dest: int, names: tuple[str, ...],
                 feed: Callable[[bytes], None] | None) -> None:
        self.kind = kind  # "pty" or "pipe"
        self.dest = dest
        self.names = names  # ("stdout",), ("stderr",) or ("stdout", "stderr")
        self.feed = feed
        self.tail = Tail()
        self.bytes = 0
        self.last_output = 0.0  # time.monotonic() of the last byte
        self.broken = False  # our own destination went away (reader closed the pipe)
        self.writing = False  # blocked handing bytes to a slow reader: not stuck, waiting
        if kind == "pty":
            self.read_fd, self.child_fd = os.openpty()
            tty.setraw(self.child_fd)  # no newline translation, no echo: bytes as written
            self.sync_window_size()
        else:
            self.read_fd, self.child_fd = os.pipe()
        self._thread = threading.Thread(target=self._pump, name=f"numdoctor-{kind}-relay",
                                        daemon=True)

    def start(self) -> None:
        os.close(self.child_fd)  # the program holds the only write end now
        self.child_fd = -1
        self._thread.start()

    def sync_window_size(self) -> None:
        if self.kind != "pty":
            return
        try:
            size = fcntl.ioctl(self.dest, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            fcntl.ioctl(self.read_fd, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, _CHUNK)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # pty: every writer has closed its end
                    break
                raise
            if not data:
                break
            self.last_output = time.monotonic()
            self.bytes += len(data)
            self.tail.add(data)
            if self.feed is not None:
                self.feed(data)
            self._write_all(data)
            if self.broken:
                # The reader of our output left (`numdoctor run -- yes | head -1`). Closing
                # our end gives the program the EPIPE/SIGPIPE it would have got without us.
                break
        os.close(self.read_fd)

    def _write_all(self, data: bytes) -> None:
        self.writing = True
        try:
            self._write_view(memoryview(data))
        finally:
            self.writing = False

    def _write_view(self, view: memoryview) -> None:
        while view:
            try:
                written = os.write(self.dest, view)
            except InterruptedError:
                continue
            except BlockingIOError:  # someone made our stdout non-blocking
                select.select([], [self.dest], [], 1.0)
                continue
            except OSError:  # EPIPE, or the terminal went away
                self.broken = True
                return
            view = view[written:]


class InheritedFile:
    """A regular file the program writes directly; watched by size."""

    def __init__(self, names: tuple[str, ...], fd: int, start: int, path: str) -> None:
        self.names = names  # ("stdout",), ("stderr",) or both when they are one file
        self.fd = fd
        self.start = start
        # For the report; reading goes through /proc/self/fd, which survives renames.
        self.path = path

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return self.start

    def written(self, limit: int) -> bytes:
        """Up to the last `limit` bytes the program wrote (since it started)."""
        end = self.size()
        begin = max(self.start, end - limit)
        if end <= begin:
            return b""
        try:
            with open(f"/proc/self/fd/{self.fd}", "rb") as fh:
                fh.seek(begin)
                return fh.read(end - begin)
        except OSError:
            return b""


class Streams:
    """How the program's stdout/stderr are wired, and what we saw of them."""

    def __init__(self) -> None:
        self.child_stdout: int | None = None  # fd to hand to the program; None = inherit
        self.child_stderr: int | None = None
        self.channels: list[Channel] = []
        self.files: list[InheritedFile] = []
        self.unobservable: list[str] = []  # streams we cannot watch
        self._file_sizes = 0

    def start(self) -> None:
        for channel in self.channels:
            channel.start()
        self._file_sizes = sum(f.size() for f in self.files)

    @property
    def blind(self) -> bool:
        """No output of the program can be observed at all (stdout and stderr on /dev/null
        or closed): only then do bytes written anywhere count as progress. (With one stream
        watched, a program that writes to a socket while it waits, as a distributed job's
        store client does, would otherwise never look hung.)"""
        return bool(self.unobservable) and not self.channels and not self.files

    def last_output(self) -> float:
        return max((c.last_output for c in self.channels), default=0.0)

    def files_grew(self) -> bool:
        """True when an inherited file grew since the last call."""
        if not self.files:
            return False
        total = sum(f.size() for f in self.files)
        grew = total != self._file_sizes
        self._file_sizes = total
        return grew

    def sync_window_size(self) -> None:
        for channel in self.channels:
            channel.sync_window_size()

    def drain(self, idle: float = 5.0) -> bool:
        """Wait until every channel has copied everything (all writers have closed).

        A reader that is slow to take our output (a pager, a full pipe) is waited for as long
        as it takes; only a channel that neither reads nor writes for `idle` seconds (a
        process outside the tree still holds it open) is given up.
        """
        for channel in self.channels:
            last = (channel.bytes, time.monotonic())
            while not channel.join(0.2):
                now = time.monotonic()
                if channel.bytes != last[0] or channel.writing:
                    last = (channel.bytes, now)
                elif now - last[1] >= idle:
                    return False
        return True

    def stderr_tail(self) -> bytes:
        """The end of what the program wrote to stderr (merged with stdout when they share)."""
        for channel in self.channels:
            if "stderr" in channel.names:
                return channel.tail.bytes()
        for inherited in self.files:
            if "stderr" in inherited.names:
                return inherited.written(TAIL_BYTES)
        return b""

    def stderr_file_region(self) -> bytes:
        """What the program wrote into an inherited stderr file (bounded), for scanning."""
        for inherited in self.files:
            if "stderr" in inherited.names:
                return inherited.written(FILE_SCAN_BYTES)
        return b""

    def describe(self) -> dict[str, str]:
        wiring = {}
        for channel in self.channels:
            for name in channel.names:
                wiring[name] = ("pseudo-terminal" if channel.kind == "pty" else "pipe") + (
                    " (shared with " + "/".join(n for n in channel.names if n != name) + ")"
                    if len(channel.names) > 1 else "")
        for inherited in self.files:
            for name in inherited.names:
                wiring[name] = f"file {inherited.path} (passed through)"
        for name in self.unobservable:
            wiring[name] = "passed through (not observable)"
        return wiring


def plan(feed: Callable[[bytes], None] | None) -> Streams:
    """Decide, for our fds 1 and 2, how the program's stdout and stderr are wired."""
    streams = Streams()
    kinds = {1: _kind(1), 2: _kind(2)}
    same = kinds[1][1] is not None and kinds[1][1] == kinds[2][1]
    groups: list[tuple[int, tuple[str, ...]]] = (
        [(1, ("stdout", "stderr"))] if same else [(1, ("stdout",)), (2, ("stderr",))])
    for fd, names in groups:
        kind = kinds[fd][0]
        if kind in ("tty", "stream"):
            channel = Channel("pty" if kind == "tty" else "pipe", fd, names,
                              feed if "stderr" in names else None)
            streams.channels.append(channel)
            if "stdout" in names:
                streams.child_stdout = channel.child_fd
            if "stderr" in names:
                streams.child_stderr = channel.child_fd
        elif kind == "file":
            streams.files.append(InheritedFile(names, fd, os.fstat(fd).st_size, _fd_path(fd)))
        else:
            streams.unobservable.extend(names)
    return streams

def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"/proc/self/fd/{fd}"
