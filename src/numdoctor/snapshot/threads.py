"""Which native thread pools have started, found by reading thread stacks through /proc.

No runtime has an API that says "my pool is running". But a pool worker parked in its barrier
has its whole call chain on its stack (`start_thread → gomp_thread_start → gomp_team_barrier
_wait …`), so its live stack holds return addresses into the runtime's code. We read each
thread's stack pointer from `/proc/<pid>/task/<tid>/syscall`, read the live part of its stack
through `/proc/<pid>/mem` (a read error, never a crash, if the thread exits meanwhile) and look
for words that point into a library's executable segment.

This works on our own process and on any process we may ptrace (our descendants).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping

from numdoctor.core.procfs import MapEntry, stack_pointer, thread_ids
from numdoctor.core.stacks.scan import CodeRanges, LiveStacks

# Idle pool workers spin for a while before sleeping in futex(); a spinning thread reports
# "running" and no stack pointer, so we retry briefly.
_RETRIES = 4
_RETRY_SLEEP = 0.003
# The live part of an idle worker's stack is a few KiB; this bounds a pathological case.
_MAX_STACK_BYTES = 256 * 1024


def attribute_threads(
    libraries: Mapping[str, Iterable[tuple[int, int]]],
    maps: list[MapEntry],
    pid: int | str = "self",
    skip_tids: Iterable[int] = (),
) -> tuple[dict[str, int], int, list[int]]:
    """Count, per library path, the threads whose live stack points into its code.

    Returns (counts, examined, unreadable_tids). A thread counts once per library.
    """
    scan = StackScan(libraries, maps, pid, skip_tids)
    scan.start()
    return scan.finish()


class StackScan:
    """`attribute_threads` in two steps, so the caller can do other work in between.

    `start()` reads every thread that is parked; `finish()` retries those that were running
    (an idle pool worker spins for a while before it sleeps) until they park or the retries
    run out. Work done between the two steps is time the spinning workers get for free.
    """

    def __init__(self, libraries: Mapping[str, Iterable[tuple[int, int]]], maps: list[MapEntry],
                 pid: int | str = "self", skip_tids: Iterable[int] = ()) -> None:
        self.pid = pid
        self.maps = maps
        self.ranges = CodeRanges((start, end, path) for path, spans in libraries.items()
                                 for start, end in spans)
        self.counts = dict.fromkeys(libraries, 0)
        self.skip = set(skip_tids)
        self.examined = 0
        self.unreadable: list[int] = []
        self.running: list[int] = []
        self.stacks: LiveStacks | None = None
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        if not self.ranges.spans:
            return
        self.stacks = LiveStacks(self.pid, self.maps, _MAX_STACK_BYTES)
        tids = [t for t in thread_ids(self.pid) if t not in self.skip]
        if not self.stacks.readable:
            self.unreadable = tids
            return
        self._read(tids)

    def finish(self) -> tuple[dict[str, int], int, list[int]]:
        """(counts, examined, unreadable_tids)."""
        try:
            # The retries are due at fixed times after start(): work the caller did since
            # counts as waiting.
            for attempt in range(1, _RETRIES):
                if not self.running:
                    break
                time.sleep(max(0.0, self.started + attempt * _RETRY_SLEEP - time.monotonic()))
                self._read(self.running)
            self.unreadable += self.running
            self.running = []
        finally:
            if self.stacks is not None:
                self.stacks.close()
        return self.counts, self.examined, self.unreadable

    def _read(self, tids: list[int]) -> None:
        assert self.stacks is not None
        running = []
        every = len(self.counts)
        for tid in tids:
            regs = stack_pointer(self.pid, tid)
            if regs is None:
                running.append(tid)
                continue
            sp, pc = regs
            words = self.stacks.words(sp)
            if words is None:
                self.unreadable.append(tid)
                continue
            self.examined += 1
            for path in self.ranges.libraries_in([pc, *words], limit=every):
                self.counts[path] += 1
        self.running = running


def python_thread_ids() -> set[int]:
    """Native ids of the threads the interpreter knows about (ours, not a pool's)."""
    import threading

    # The current thread is asked directly: after os.fork() CPython 3.11 keeps the parent's
    # native id in the main thread's record, which would count a thread that is not here.
    current = threading.current_thread()
    ids = {t.native_id for t in threading.enumerate()
           if t is not current and t.native_id is not None}
    ids.add(threading.get_native_id())
    return ids


if sys.platform != "linux":  # pragma: no cover - /proc is Linux-only

    class StackScan:  # type: ignore[no-redef]
        def __init__(self, libraries, maps, pid="self", skip_tids=()):
            self.counts = dict.fromkeys(libraries, 0)

        def start(self):
            pass

        def finish(self):
            return self.counts, 0, []
