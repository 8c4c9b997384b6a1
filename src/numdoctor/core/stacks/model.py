"""Where every thread of a process is: frames, threads, processes. Plain data."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Frame:
    """One frame of a stack: Python (file and line) or native (library and function)."""

    kind: str  # "python" or "native"
    function: str
    file: str = ""  # Python source file, or the library of a native frame
    line: int | None = None
    package: str = ""  # who ships `file`: "torch 2.13.0", "Python standard library", ...
    approximate: bool = False  # found by scanning a stack, not by unwinding it

    def label(self) -> str:
        if self.kind == "python":
            where = os.path.basename(self.file) if self.file else "?"
            return f"{self.function} ({where}:{self.line if self.line is not None else '?'})"
        library = os.path.basename(self.file) if self.file else "?"
        name = self.function if self.function and not self.function.startswith("0x") else ""
        return f"{name} ({library})" if name else f"[{library}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ThreadStack:
    """One thread's frames, innermost first, with its state and where they came from."""

    id: str  # "0x7f...": the pthread id, as faulthandler and py-spy print it; or the tid
    native_id: int | None = None  # the kernel's thread id
    name: str = ""
    state: str = ""  # "running", "idle", "waiting (futex)", ...
    current: bool = False  # faulthandler: the thread that took the signal (the faulting one)
    owns_gil: bool | None = None
    frames: list[Frame] = field(default_factory=list)  # innermost first
    source: str = ""  # "faulthandler", "py-spy", "gdb", "stack scan"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["frames"] = [f.to_dict() for f in self.frames]
        return data


@dataclass
class ProcessStacks:
    """Every thread's stack of one process, and which dump tools answered."""

    pid: int
    python: bool = False
    threads: list[ThreadStack] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the rungs that answered
    notes: list[str] = field(default_factory=list)  # why a rung did not answer
    fatal: str = ""  # "Segmentation fault" from faulthandler's "Fatal Python error: ..."
    faulthandler_text: str = ""  # the raw dump, for the report
    native: bool = False  # native frames were obtained (by unwinding, not scanning)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "python": self.python, "sources": self.sources,
            "notes": self.notes, "fatal": self.fatal, "native": self.native,
            "threads": [t.to_dict() for t in self.threads],
            "faulthandler": self.faulthandler_text,
        }


