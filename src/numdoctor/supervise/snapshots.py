"""Snapshots of a supervised program, taken from the outside while it runs.

`check` inspects a process it starts; `run` inspects the program's main Python process from
the outside (its maps, threads and environment, through /proc), early and then less often:
the program loads libraries as it imports them, and the latest picture wins. The snapshot
rules then run on it, so `run` reports OMP001, BLAS001... about the program as it ran.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from numdoctor.core.monitor import Monitor

SNAPSHOT_SCHEDULE = (1.0, 4.0, 15.0, 60.0)
SNAPSHOT_EVERY = 300.0


def schedule() -> Iterator[float]:
    """Seconds after the start at which to take a snapshot: early, then less often."""
    yield from SNAPSHOT_SCHEDULE
    later = SNAPSHOT_SCHEDULE[-1]
    while True:
        later += SNAPSHOT_EVERY
        yield later


class Snapshots:
    def __init__(self, monitor: Monitor, main_pid: int, started: float,
                 learn_sites: Callable[[dict[int, dict]], object]) -> None:
        self.monitor = monitor
        self.main_pid = main_pid
        self.started = started
        self.learn_sites = learn_sites
        self.notes: list[str] = []
        self.seconds = 0.0
        self.mapped: set[str] = set()  # every file seen mapped, for the kernel log's names
        self.capture: Any = None  # the latest facts.Capture of the program's main process
        self._built: Any = None
        self._built_from: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._serial = 0  # snapshots started
        self._taken = 0  # serial of the one in self.capture

    def _target(self, infos: dict[int, dict]) -> int | None:
        """The program's main Python process: the snapshot describes it."""
        live = self.monitor.live()
        if self.main_pid in infos and any(p.pid == self.main_pid for p in live):
            return self.main_pid
        for proc in sorted(live, key=lambda p: p.first_seen):
            if proc.pid in infos and not infos[proc.pid].get("forked_from"):
                return proc.pid
        return self.main_pid if any(p.pid == self.main_pid for p in live) else None

    def take(self, infos: dict[int, dict], *, background: bool = False) -> None:
        """Start a snapshot in a thread. The periodic ones run at the lowest CPU priority, so
        that a program that keeps every CPU busy does not wait for them; the one at an
        incident runs at normal priority while the stacks are dumped."""
        if background and self._thread is not None and self._thread.is_alive():
            return  # the previous one is still running on a busy machine
        pid = self._target(infos)
        if pid is None:
            return
        self._serial += 1
        thread = threading.Thread(target=self._collect, args=(pid, infos, background,
                                                              self._serial),
                                  daemon=True, name="numdoctor-snapshot")
        thread.start()
        self._thread = thread

    def wait(self, seconds: float) -> None:
        if self._thread is not None:
            self._thread.join(seconds)

    def _collect(self, pid: int, infos: dict[int, dict], nice: bool, serial: int) -> None:
        from numdoctor.supervise.facts import capture

        if nice:
            try:  # this thread only: Linux priorities are per thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except (OSError, AttributeError):
                pass
        started = time.perf_counter()
        self.learn_sites(infos)
        try:
            taken = capture(pid, infos.get(pid))
        except Exception as exc:  # a bug in a collector must not end the supervision
            self.notes.append(f"snapshot of pid {pid} failed: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            if serial >= self._taken:  # an older, slower one must not win
                self._taken = serial
                self.capture = taken
            self.mapped.update(m.path for m in taken.maps if m.path.startswith("/"))
        self.seconds += time.perf_counter() - started

    def snapshot(self) -> Any:
        """The Snapshot of the latest capture, built on first use (pip lookups and system
        facts cost more than the capture, and are only needed for a report)."""
        from numdoctor.supervise.facts import build

        taken = self.capture
        if taken is None:
            return None
        if self._built_from is not taken:
            try:
                self._built = build(taken, self.started)
            except Exception as exc:
                self.notes.append(f"snapshot of pid {taken.pid} failed: "
                                  f"{type(exc).__name__}: {exc}")
                self._built = None
            self._built_from = taken
        return self._built

    def findings(self) -> list[Any]:
        snapshot = self.snapshot()
        if snapshot is None:
            return []
        from numdoctor.rules import apply_rules

        return [f for f in apply_rules(snapshot) if f.code != "ND000"]

    def openmp_libraries(self) -> list[str]:
        snapshot = self.snapshot()
        if snapshot is None:
            return []
        from numdoctor.rules._evidence import describe_library

        return [describe_library(lib) for lib in snapshot.libs("openmp")]

    def mapped_files(self) -> set[str]:
        with self._lock:
            return set(self.mapped)
