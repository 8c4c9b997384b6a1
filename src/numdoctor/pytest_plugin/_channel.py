"""Messages from a test's subprocess to the pytest process: length-prefixed pickles on a pipe.

Both ends are processes of the same pytest run, so pickle is a safe and complete format: it
keeps the tuples of serialised reports as tuples, and whatever a plugin attached to a report.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from typing import Any

_LENGTH = struct.Struct("!I")


def _dumps(message: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        # A user property or report attribute that cannot be pickled: send its repr rather
        # than lose the whole report.
        plain = json.loads(json.dumps(message, default=repr))
        return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)


class Sender:
    """The child's end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        payload = _dumps(message)
        view = memoryview(_LENGTH.pack(len(payload)) + payload)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


class Receiver:
    """The parent's end: feed it what the pipe gave, get back the complete messages."""

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
        """A message was cut off: the child died while sending it."""
        return bool(self._buffer)
