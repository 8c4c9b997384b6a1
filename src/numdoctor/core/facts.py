"""What a supervisor saw of a process tree, as plain data for the diagnoses (numdoctor.rules.run).

`ProcView` is one process of the tree at the moment of an incident or an exit; `Death` is a
process that died by a signal (or left a fatal faulthandler dump), with everything that tells
why: its stacks, its wait status, what the kernel logged. Both are filled by the supervisor
(numdoctor.supervise) and judged by pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Annotations only: the rules that read these facts load with every `numdoctor check`, which
# must not pay for the monitor and the kernel log.
if TYPE_CHECKING:
    from numdoctor.core.kmsg import KernelEvent
    from numdoctor.core.monitor import Series
    from numdoctor.core.stacks.model import ThreadStack
    from numdoctor.core.status import Exit


@dataclass
class ProcView:
    """One process of the tree as the diagnosis sees it."""

    pid: int
    ppid: int
    command: str
    role: str = ""  # "main", "forked from 123", "child of 123"
    cpu: float | None = None  # CPUs used over the incident window
    state: str = ""
    python: bool = False
    forked_from: int | None = None
    threads_at_fork: int | None = None
    rss: int = 0
    peak_rss: int = 0
    memory: Series | None = None

    def label(self) -> str:
        return f"pid {self.pid} ({self.command}){f' [{self.role}]' if self.role else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "ppid": self.ppid, "command": self.command, "role": self.role,
                "cpu": None if self.cpu is None else round(self.cpu, 3), "state": self.state,
                "python": self.python, "rss": self.rss, "peak_rss": self.peak_rss,
                "forked_from": self.forked_from}


@dataclass
class Death:
    """A process of the tree that died by a signal (or whose fatal dump we found)."""

    pid: int
    signal: int | None
    role: str = ""  # "main" or "worker of pid N"
    command: str = ""
    exit: Exit | None = None
    fatal: str = ""  # faulthandler's "Fatal Python error: <fatal>"
    threads: list[ThreadStack] = field(default_factory=list)  # frames carry their packages
    kernel: list[KernelEvent] = field(default_factory=list)
    peak_rss: int = 0
    mapped: list[str] = field(default_factory=list)  # files mapped, for kernel log names
    # The library the kernel log names as holding the faulting instruction (full path, when
    # a mapped file matches), and the package that ships it.
    kernel_library: str = ""
    kernel_library_package: str = ""
