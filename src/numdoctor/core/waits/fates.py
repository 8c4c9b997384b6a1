"""How the processes that left the tree ended: the run directory's reaping records, and the
kernel's OOM killer records.

Every Python process of a supervised tree appends "<child pid> <wait status> <monotonic
time>" to `<run_dir>/fates-<its pid>.txt` whenever it reaps a child (the injected
sitecustomize wraps `os.waitpid` and friends): a grandchild's exit status goes to its parent
only, so a pool or DataLoader worker killed by a signal would otherwise just vanish.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from numdoctor.core.waits.model import Fate

_FILE = re.compile(r"^fates-(\d+)\.txt$")


class _KernelEvent(Protocol):  # numdoctor.supervise.kmsg.KernelEvent
    pid: int
    kind: str


def parse_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of a wait status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def read_fates(run_dir: str | None, *, started: float,
               kernel: Iterable[_KernelEvent] = ()) -> list[Fate]:
    """Every child reaped by a process of the tree, oldest first.

    `started` is the `time.monotonic()` of the supervision start (fates' times are given
    relative to it). `kernel` are the kernel log records read so far: a process the OOM killer
    chose is marked `oom_killed`.
    """
    if not run_dir:
        return []
    oom = {event.pid for event in kernel if event.kind == "oom-kill"}
    fates: list[Fate] = []
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    for name in names:
        match = _FILE.match(name)
        if not match:
            continue
        reaper = int(match.group(1))
        try:
            text = Path(run_dir, name).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) != 3:
                continue  # a line being written
            try:
                pid, status, when = int(fields[0]), int(fields[1]), float(fields[2])
            except ValueError:
                continue
            code, number = parse_status(status)
            fates.append(Fate(pid=pid, ppid=reaper, ended=round(when - started, 3),
                              exit_code=code, signal=number,
                              source=f"its parent pid {reaper} reaped it",
                              oom_killed=pid in oom and number == 9))
    fates.sort(key=lambda f: (f.ended if f.ended is not None else 0.0, f.pid))
    return fates


def merge_fates(*groups: Iterable[Fate]) -> list[Fate]:
    """One Fate per pid; a fate that knows how the process ended wins over one that does not
    (the supervisor's "vanished" against the parent's record)."""
    best: dict[int, Fate] = {}
    for group in groups:
        for fate in group:
            known = best.get(fate.pid)
            if known is None or _rank(fate) > _rank(known):
                merged = fate
                if known is not None:
                    merged.command = merged.command or known.command
                    merged.role = merged.role or known.role
                    merged.last_stack = merged.last_stack or known.last_stack
                    merged.job = merged.job or known.job
                best[fate.pid] = merged
            else:
                known.command = known.command or fate.command
                known.role = known.role or fate.role
                known.last_stack = known.last_stack or fate.last_stack
                known.job = known.job or fate.job
                known.oom_killed = known.oom_killed or fate.oom_killed
    return sorted(best.values(), key=lambda f: (f.ended if f.ended is not None else 0.0,
                                                f.pid))


def _rank(fate: Fate) -> int:
    return (2 if fate.exit_code is not None or fate.signal is not None else 0) + \
        (1 if fate.oom_killed else 0)
