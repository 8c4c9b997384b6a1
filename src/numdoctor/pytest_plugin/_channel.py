"""Messages between the pytest process and a test worker: length-prefixed pickles on pipes.

Both ends are processes of the same pytest run, so pickle is a safe and complete format: it
keeps the tuples of serialised reports as tuples, and whatever a plugin attached to a report.
"""

from __future__ import annotations

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


class Sender:
    """The writing end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any],
             fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """`fallback` makes a message that pickles from one that does not."""
        self.send_many([message], fallback)

    def send_many(self, messages: list[dict[str, Any]],
                  fallback: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """All in one write: each write wakes the reader, and a test sends several."""
        chunks = []
        for message in messages:
            payload = _dumps(message, fallback)
            chunks += [_LENGTH.pack(len(payload)), payload]
        view = memoryview(b"".join(chunks))
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


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
