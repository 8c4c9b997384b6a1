"""From frames to a culprit: which library (and package) a crash or a wait is in.

A crash is blamed on the first native frame, innermost first, that is not plumbing every
crash passes through (the C library, the C++ runtime, the dynamic loader, libffi, the Python
interpreter). Without native frames the innermost Python frame is used: the module that
called into native code. Frames carry the package that ships their file (`Frame.package`,
filled by the supervisor when it collects them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from numdoctor.core.stacks.model import Frame

# Libraries every native crash or wait passes through; never the culprit themselves.
_PLUMBING = re.compile(
    r"^(?:libc|libpthread|libstdc\+\+|libc\+\+|libc\+\+abi|libgcc_s|libunwind|ld-linux[\w.-]*"
    r"|ld64|ld-musl[\w.-]*|libffi|libpython\d[\w.]*|libdl|libm|librt|linux-vdso|libSegFault)"
    r"(?:[-.]|$)")
_STDLIB = re.compile(r"[\\/]lib[\\/](?:python\d+(?:\.\d+)?t?|Lib)[\\/](?!.*(?:site|dist)-packages)")


def is_plumbing(path: str, interpreters: tuple[str, ...] = ()) -> bool:
    name = os.path.basename(path)
    if _PLUMBING.match(name):
        return True
    real = os.path.realpath(path) if path else ""
    return bool(real) and real in interpreters


def is_standard_library(path: str) -> bool:
    return path.startswith("<frozen ") or bool(_STDLIB.search(path))


def module_of(path: str) -> str:
    """A Python file's module name as far as its path tells: .../ctypes/__init__.py -> ctypes."""
    parts = re.split(r"[\\/]", path)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            parts = parts[parts.index(marker) + 1:]
            break
    else:
        match = _STDLIB.search(path)
        if match:
            parts = re.split(r"[\\/]", path[match.end():])
        else:
            return os.path.splitext(os.path.basename(path))[0]
    if not parts:
        return ""
    parts[-1] = os.path.splitext(parts[-1])[0]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(p for p in parts if p)


@dataclass(frozen=True)
class Culprit:
    """The frame a crash or hang is blamed on, the library and package that own it."""

    frame: Frame
    library: str  # a native library path, or "" when blamed on a Python frame
    package: str
    reason: str  # how it was chosen, for the evidence

    def describe(self) -> str:
        owner = self.package or "installed by no package manager"
        if self.library:
            return f"{os.path.basename(self.library)} [{owner}] ({self.reason})"
        module = module_of(self.frame.file)
        return f"{module or self.frame.file} [{owner}] ({self.reason})"


def culprit(frames: list[Frame], interpreters: tuple[str, ...] = ()) -> Culprit | None:
    """The library (or Python module) to blame for a crash or a wait, from its frames."""
    natives = [f for f in frames if f.kind == "native" and f.file]
    for frame in natives:
        if not is_plumbing(frame.file, interpreters):
            how = "first native frame outside libc/libstdc++/ld.so/libffi/libpython"
            if frame.approximate:
                how += ", found by a stack scan"
            return Culprit(frame, frame.file, frame.package, how)
    python = next((f for f in frames if f.kind == "python" and f.file), None)
    if python is not None:
        how = ("innermost Python frame; native frames were not available" if not natives
               else "innermost Python frame; every native frame is libc/libpython plumbing")
        return Culprit(python, "", python.package, how)
    return None
