"""`numdoctor.heartbeat()`: tell whoever watches this program that it is making progress.

Call it from a loop that prints nothing (a training step, a solver iteration). Under
`numdoctor run --hang-timeout S` a program that neither writes output nor beats for S seconds
counts as hung; a beat resets that clock. Without a supervisor and without hooks it does
nothing but read the monotonic clock.

It is cheap enough for a tight loop: calls closer together than the rate limit cost one clock
read and a comparison; at most a few times per second it touches the heartbeat file (one
`utime` system call) and notifies the registered hooks.

Hooks let in-process watchers (a watchdog that wants to know the program is alive) share the
same beats: `add_hook(fn)` registers `fn(monotonic_time)`. Hooks must be fast and must not
raise; one that raises is removed so it cannot break the program.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

Hook = Callable[[float], None]

# Seconds between two beats that reach the supervisor: well below any hang timeout, well
# above anything that would cost measurable time.
DEFAULT_INTERVAL = 0.25

_lock = threading.Lock()
_hooks: list[Hook] = []
_last = 0.0
_path: str | None = None
_interval = DEFAULT_INTERVAL
_configured = False


# The tightest interval any hook asked for (see add_hook), and the rate limit heartbeat()
# applies: kept precomputed because heartbeat() sits in users' innermost loops.
_hook_interval = float("inf")
_hook_intervals: dict[int, float] = {}
_limit = 0.0


def _update_limit() -> None:
    global _limit
    _limit = min(_interval, _hook_interval)


def _configure() -> None:
    """Read the supervisor's settings once per process."""
    global _path, _interval, _configured
    _path = os.environ.get("NUMDOCTOR_HEARTBEAT") or None
    interval = DEFAULT_INTERVAL
    hang = os.environ.get("NUMDOCTOR_HANG_TIMEOUT")
    if hang:
        try:
            # Beat several times per hang window, however short the window is.
            interval = min(DEFAULT_INTERVAL, max(0.01, float(hang) / 10))
        except ValueError:
            pass
    _interval = interval
    _configured = True
    _update_limit()


def _forget_configuration() -> None:
    # A forked child re-reads the environment and beats at once: its parent's rate limit is
    # not its own.
    global _configured, _last
    _configured = False
    _last = 0.0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_configuration)


def heartbeat() -> None:
    """Record that the program is making progress. Safe to call as often as you like."""
    global _last
    now = time.monotonic()
    if now - _last < _limit and _configured:
        return
    if not _configured:
        _configure()
    _last = now
    if _path is not None:
        try:
            os.utime(_path)
        except OSError:
            pass
    if _hooks:
        _notify(now)


def _notify(now: float) -> None:
    for hook in list(_hooks):
        try:
            hook(now)
        except Exception:
            remove_hook(hook)


def add_hook(hook: Hook, interval: float | None = None) -> None:
    """Call `hook(time.monotonic())` on every beat that passes the rate limit.

    `interval`: the longest gap between notifications the hook can live with (an in-process
    watchdog with a short timeout needs beats more often than the supervisor does).
    """
    global _hook_interval
    with _lock:
        if hook not in _hooks:
            _hooks.append(hook)
            _hook_intervals[id(hook)] = interval if interval is not None else float("inf")
        _hook_interval = min(_hook_intervals.values(), default=float("inf"))
        _update_limit()


def remove_hook(hook: Hook) -> None:
    global _hook_interval
    with _lock:
        if hook in _hooks:
            _hooks.remove(hook)
            _hook_intervals.pop(id(hook), None)
        _hook_interval = min(_hook_intervals.values(), default=float("inf"))
        _update_limit()


def supervised() -> bool:
    """True when a numdoctor supervisor is listening to the beats of this process."""
    if not _configured:
        _configure()
    return _path is not None
