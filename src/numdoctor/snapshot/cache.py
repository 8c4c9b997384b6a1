"""numdoctor's on-disk cache of file facts that only change when the files do.

`~/.cache/numdoctor` (or `$XDG_CACHE_HOME/numdoctor`, or `$NUMDOCTOR_CACHE_DIR`);
`NUMDOCTOR_NO_CACHE=1` turns it off. Entries are JSON, written atomically; a missing,
unreadable or foreign file is simply a cache miss, and a read-only home only costs time.
"""

from __future__ import annotations

import json
import os
from typing import Any


def cache_dir() -> str | None:
    """The cache directory, or None when caching is turned off."""
    if os.environ.get("NUMDOCTOR_NO_CACHE"):
        return None
    return os.environ.get("NUMDOCTOR_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numdoctor")


def short_hash(text: str) -> str:
    """16 hex digits naming a cache file (zlib, not hashlib: loading OpenSSL costs `check`
    5 ms, and this is no secret; the full key is stored inside and checked)."""
    import zlib

    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def load(path: str) -> Any:
    """The JSON in `path`, or None."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def store(path: str, data: Any) -> None:
    """Write `data` to `path` atomically (other numdoctor processes may read it meanwhile)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home is fine: the answer was computed anyway
