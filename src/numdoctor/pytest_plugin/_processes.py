"""The processes a test started: keep them in its tree, find them, kill them all.

A test's subprocess leads its own session and is a *child subreaper*: a process it starts
that daemonises (double fork, `setsid`) is re-parented to it instead of to init, so every
process the test started stays its descendant while it lives. The pytest process then kills
the descendants and the session members of that subprocess; it never becomes a subreaper
itself, which would change how every other test's orphans behave.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import time
from dataclasses import dataclass

import psutil

from numdoctor.redact import redact_text

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def preload() -> None:
    """Load libc's handle once, in the pytest process: every forked child inherits it."""
    _libc()


def _prctl(option: int, value: int) -> bool:
    libc = _libc()
    try:
        return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0
    except AttributeError:  # not Linux
        return False


def become_subreaper() -> bool:
    """Orphans of this process's descendants re-parent to it (Linux >= 3.4)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> bool:
    """SIGKILL this process when its parent dies, so a killed pytest leaves no test behind."""
    return _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class Killed:
    pid: int
    command: str

    def describe(self) -> str:
        return f"{self.pid} ({self.command})"


def _command(process: psutil.Process) -> str:
    try:
        words = process.cmdline() or [process.name()]
    except (psutil.Error, OSError):
        return "?"
    text = redact_text(" ".join(words))  # before the cut: half a secret has no shape
    return text if len(text) <= 160 else text[:157] + "..."


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def members(root: int, session: int | None) -> list[psutil.Process]:
    """Live descendants of `root`, and every live process whose session id is `session`."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(root).children(recursive=True):
            found[process.pid] = process
    if session is not None:
        me = os.getpid()
        for pid in psutil.pids():
            if pid in found or pid in (me, root):
                continue
            try:
                if os.getsid(pid) == session:
                    found[pid] = psutil.Process(pid)
            except (OSError, psutil.Error):
                continue
    return [p for p in found.values() if not _gone(p)]


def kill_tree(root: int, *, session: int | None = None, include_root: bool = False,
              timeout: float = 5.0) -> list[Killed]:
    """SIGKILL what `members()` finds (and `root` itself with `include_root`).

    Everything is stopped first, again and again until no new process appears, so a process
    that forks while we look cannot out-run the kill. The caller reaps `root` (its own child);
    the others are reaped by their parents or, once those are dead, by init.
    """
    stopped: dict[int, psutil.Process] = {}
    commands: dict[int, str] = {}
    if include_root:
        with contextlib.suppress(psutil.Error):
            root_process = psutil.Process(root)
            commands[root] = _command(root_process)
            stopped[root] = root_process
            os.kill(root, signal.SIGSTOP)
    for _ in range(20):
        fresh = [p for p in members(root, session) if p.pid not in stopped]
        if not fresh:
            break
        for process in fresh:
            commands[process.pid] = _command(process)
            stopped[process.pid] = process
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGSTOP)
    killed = []
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(Killed(pid, commands.get(pid, "?")))
        except OSError:
            continue
    deadline = time.monotonic() + timeout
    waiting = [p for pid, p in stopped.items() if pid != root]
    while waiting and time.monotonic() < deadline:
        waiting = [p for p in waiting if not _gone(p)]
        if waiting:
            time.sleep(0.01)
    return killed


def kill_own_descendants() -> list[Killed]:
    """Used by a test's subprocess before it exits: kill and reap what the test left running."""
    me = os.getpid()
    # Every orphan of the tree re-parents to us (subreaper): no child, no descendant at all.
    if _has_children() is False or not members(me, None):
        return []
    killed = kill_tree(me, timeout=2.0)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return killed


def _has_children() -> bool | None:
    """Cheap look at /proc/self/task/*/children; None where the kernel does not provide it."""
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
                if fh.read().strip():
                    return True
    except OSError:
        return None
    return False
