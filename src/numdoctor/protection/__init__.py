"""`numdoctor.guard()`: protection inside the process, for scripts, notebooks and test suites.

    guard = numdoctor.guard(hang_timeout=300)   # top of a training script
    for batch in loader:
        ...
        numdoctor.heartbeat()                   # "still making progress"

- faulthandler for every thread on fatal signals (SIGSEGV, SIGABRT, ...);
- a hang watchdog: faulthandler's C-level timer dumps every thread's stack when no heartbeat
  came for `hang_timeout` seconds, and it fires even while C code holds the GIL (a Python
  timer would not);
- a fork check: before `fork()` (multiprocessing's fork start method, DataLoader workers) it
  looks for a started GNU OpenMP pool and warns, or raises `ForkHazardError`, *before* the
  child is created and deadlocks (FORK001);
- a reload watch: re-importing numpy, torch, ... warns (RELOAD001).

`guard()` is idempotent (a second call reconfigures and returns the same handle) and undoable
(`.close()`, or use it as a context manager).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import warnings
from typing import IO, Literal

from numdoctor.protection.reloads import ReloadWarning, ReloadWatcher

__all__ = ["ForkHazardError", "ForkHazardWarning", "Guard", "ReloadWarning", "guard"]

OnFork = Literal["warn", "raise", "ignore"]


class ForkHazardWarning(RuntimeWarning):
    """fork() was called while a GNU OpenMP pool runs: the child will likely deadlock."""


class ForkHazardError(RuntimeError):
    """Raised instead of forking when `guard(on_fork="raise")` sees a started OpenMP pool."""

    def __init__(self, finding) -> None:
        self.finding = finding
        super().__init__(_fork_message(finding))


def _fork_message(finding) -> str:
    from numdoctor.redact import redact_text

    lines = [f"numdoctor {finding.code}: {finding.title}", *finding.evidence,
             f"fix: {finding.fix}"]
    return redact_text("\n  ".join(lines))


class Guard:
    """The handle `guard()` returns. Use `.close()` or `with` to undo everything."""

    def __init__(self) -> None:
        self.hang_timeout: float | None = None
        self.on_fork: OnFork = "warn"
        self._file: IO[str] = sys.stderr
        self._faulthandler_was_enabled = faulthandler.is_enabled()
        self._armed_faulthandler = False
        self._real_fork = os.fork
        # One bound method, kept: each attribute access would make a new one, and `os.fork is
        # self._guarded_fork` would never be true.
        self._fork_wrapper = self._guarded_fork
        self._beat_hook = self._on_beat  # kept, so remove_hook finds the same object
        self._reloads: ReloadWatcher | None = None
        self._next_arm = float("inf")  # no watchdog until hang_timeout is set
        self._lock = threading.Lock()
        self.closed = False

    # -- configuration ----------------------------------------------------------------------
    def _configure(self, hang_timeout: float | None, on_fork: OnFork, use_faulthandler: bool,
                   watch_reloads: bool, file: IO[str] | None) -> None:
        if hang_timeout is not None and hang_timeout <= 0:
            raise ValueError(f"hang_timeout must be a positive number of seconds, "
                             f"not {hang_timeout!r}")
        if on_fork not in ("warn", "raise", "ignore"):
            raise ValueError(f"on_fork must be 'warn', 'raise' or 'ignore', not {on_fork!r}")
        self._file = file or sys.stderr
        if use_faulthandler and not faulthandler.is_enabled():
            faulthandler.enable(file=self._file, all_threads=True)
            self._armed_faulthandler = True
        self.hang_timeout = hang_timeout
        self._arm_watchdog()
        # numdoctor.heartbeat() (also what `numdoctor run` listens to) feeds this watchdog.
        from numdoctor.supervise import heartbeat as beats

        beats.remove_hook(self._beat_hook)
        if hang_timeout is not None:
            beats.add_hook(self._beat_hook, interval=hang_timeout / 10)
        self.on_fork = on_fork
        if on_fork == "ignore":
            self._restore_fork()
        elif os.fork is not self._fork_wrapper:
            self._real_fork = os.fork
            os.fork = self._fork_wrapper  # multiprocessing looks os.fork up at call time
        if watch_reloads and self._reloads is None:
            self._reloads = ReloadWatcher()
            self._reloads.install()
        elif not watch_reloads and self._reloads is not None:
            self._reloads.uninstall()
            self._reloads = None

    # -- hang watchdog ------------------------------------------------------------------------
    def _arm_watchdog(self) -> None:
        if self.closed or self.hang_timeout is None:
            self._next_arm = float("inf")
            faulthandler.cancel_dump_traceback_later()
            return
        with self._lock:
            # Re-arming restarts faulthandler's C thread; a tenth of the timeout of slack
            # keeps a loop that beats every iteration from paying that each time.
            self._next_arm = time.monotonic() + self.hang_timeout / 10
            faulthandler.dump_traceback_later(self.hang_timeout, repeat=True, file=self._file)

    def _on_beat(self, now: float) -> None:
        if now >= self._next_arm:
            self._arm_watchdog()

    def heartbeat(self) -> None:
        """Progress was made: push the watchdog's deadline back."""
        # The hot path of a training loop: one clock read and one comparison.
        if time.monotonic() >= self._next_arm:
            self._arm_watchdog()

    # -- fork ---------------------------------------------------------------------------------
    def _guarded_fork(self) -> int:
        # os.fork itself is wrapped because only a wrapper can refuse to fork: exceptions in
        # os.register_at_fork hooks are ignored by CPython.
        if not self.closed and self.on_fork != "ignore":
            self._check_fork(stacklevel=3)
        _CHECKED.flag = True
        try:
            return self._real_fork()
        finally:
            _CHECKED.flag = False

    def _check_fork(self, stacklevel: int) -> None:
        from numdoctor.protection.forkcheck import fork_hazard

        finding = fork_hazard()
        if finding is None:
            return
        if self.on_fork == "raise":
            raise ForkHazardError(finding)
        warnings.warn(ForkHazardWarning(_fork_message(finding)), stacklevel=stacklevel)

    def _restore_fork(self) -> None:
        if os.fork is self._fork_wrapper:
            os.fork = self._real_fork

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        global _ACTIVE
        if self.closed:
            return
        self.closed = True
        faulthandler.cancel_dump_traceback_later()
        from numdoctor.supervise import heartbeat as beats

        beats.remove_hook(self._beat_hook)
        self._restore_fork()
        if self._reloads is not None:
            self._reloads.uninstall()
            self._reloads = None
        if self._armed_faulthandler and not self._faulthandler_was_enabled:
            faulthandler.disable()
        if _ACTIVE is self:
            _ACTIVE = None

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "active"
        return (f"<numdoctor.Guard {state} hang_timeout={self.hang_timeout} "
                f"on_fork={self.on_fork!r}>")


_ACTIVE: Guard | None = None
# Set while our os.fork wrapper forks, so the at-fork hook does not check a second time.
_CHECKED = threading.local()
_HOOK_REGISTERED = False


def _before_fork() -> None:
    """os.register_at_fork hook: covers forks that bypass the os.fork attribute (a reference
    taken before guard() ran, os.forkpty). It can only warn; raising is not possible here."""
    active = active_guard()
    if active is None or active.on_fork == "ignore" or getattr(_CHECKED, "flag", False):
        return
    try:
        active.on_fork, mode = "warn", active.on_fork
        active._check_fork(stacklevel=2)
    finally:
        active.on_fork = mode


def guard(*, hang_timeout: float | None = None, on_fork: OnFork = "warn",
          faulthandler: bool = True, watch_reloads: bool = True,
          file: IO[str] | None = None) -> Guard:
    """Arm numdoctor's in-process protections; returns a handle (see module docstring)."""
    global _ACTIVE, _HOOK_REGISTERED
    if _ACTIVE is None or _ACTIVE.closed:
        _ACTIVE = Guard()
    if not _HOOK_REGISTERED and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork)  # cannot be unregistered: it checks _ACTIVE
        _HOOK_REGISTERED = True
    _ACTIVE._configure(hang_timeout, on_fork, faulthandler, watch_reloads, file)
    return _ACTIVE


def active_guard() -> Guard | None:
    return _ACTIVE if _ACTIVE is not None and not _ACTIVE.closed else None
