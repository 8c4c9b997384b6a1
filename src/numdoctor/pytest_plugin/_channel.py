"""Messages between the pytest process and a test worker: length-prefixed pickles on pipes.

Both ends are processes of the same pytest run, so pickle is a safe and complete format: it
keeps the tuples of serialised reports as tuples, and whatever a plugin attached to a report.

The worker's messages travel on a pipe the pytest process does not wait on; a second pipe, the
doorbell, wakes it for what cannot wait (a failure it must count before the next test, the
worker running out of tests). Waking a process costs the writer far more than the write: on a
machine whose cores the tests keep busy, the woken pytest process takes the core of the test
that woke it. So a suite of fast tests wakes it a few dozen times a second, not once per test;
it reads the rest on its own schedule, and what a hung or dead worker sent still waits in the
pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import select
import struct
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct("!I")


def _dumps(message: dict[str, Any],
           fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> bytes:
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if fallback is not None:
            message = fallback(message)
            try:
                return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                pass
        # A user property or report attribute that cannot be pickled: send its repr rather
        # than lose the whole report.
        plain = json.loads(json.dumps(message, default=repr))
        return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)


# The worker's side may write this much before it blocks on a reader that has not come by.
PIPE_SIZE = 1 << 20


def widen(fd: int) -> None:
    """Make a pipe hold up to PIPE_SIZE (best effort: the system may cap it)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


class Sender:
    """The writing end; with a `doorbell`, it wakes the reader only when asked to."""

    def __init__(self, fd: int, doorbell: int | None = None) -> None:
        self.fd = fd
        self.doorbell = doorbell
        self.unheard = False  # written since the last ring

    def send(self, message: dict[str, Any],
             fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None, *,
             ring: bool = True) -> None:
        """`fallback` makes a message that pickles from one that does not."""
        self.send_many([message], fallback, ring=ring)

    def send_many(self, messages: list[dict[str, Any]],
                  fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None, *,
                  ring: bool = True) -> None:
        """All in one write; `ring`: wake the reader now (without, it reads them soon)."""
        chunks = []
        for message in messages:
            payload = _dumps(message, fallback)
            chunks += [_LENGTH.pack(len(payload)), payload]
        view = memoryview(b"".join(chunks))
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.unheard = True
        if ring:
            self.ring()

    def ring(self) -> None:
        """Wake the reader to what was written."""
        if self.doorbell is not None and self.unheard:
            # Non-blocking: a full doorbell has rung already.
            with contextlib.suppress(BlockingIOError):
                os.write(self.doorbell, b"!")
        self.unheard = False


class Receiver:
    """The reading end: feed it what the pipe gave, get back the complete messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            messages.append(pickle.loads(bytes(self._buffer[_LENGTH.size:end])))
            del self._buffer[:end]
        return messages

    @property
    def partial(self) -> bool:
        """A message was cut off: the sender died while sending it."""
        return bool(self._buffer)


class Inbox:
    """A blocking reader of one message at a time (the worker's side of the commands)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.receiver = Receiver()
        self.pending: list[dict[str, Any]] = []

    def waiting(self) -> bool:
        """A message is there to get without blocking."""
        return bool(self.pending) or bool(select.select([self.fd], [], [], 0)[0])

    def has(self, kind: str) -> bool:
        """A message of `kind` has come, whatever comes before it (read without blocking)."""
        if select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 1 << 16)
            self.pending.extend(self.receiver.feed(data))
        return any(message.get("type") == kind for message in self.pending)

    def get(self, timeout: float | None = None, kind: str | None = None
            ) -> dict[str, Any] | None:
        """The next message (of `kind`, keeping the others for later, in order); None at end
        of file (the pytest process is gone) or timeout."""
        while True:
            for index, message in enumerate(self.pending):
                if kind is None or message.get("type") == kind:
                    return self.pending.pop(index)
            if timeout is not None and not select.select([self.fd], [], [], timeout)[0]:
                return None
            data = os.read(self.fd, 1 << 16)
            if not data:
                return None
            self.pending.extend(self.receiver.feed(data))
