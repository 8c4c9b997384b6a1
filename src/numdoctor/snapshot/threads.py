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

import bisect
import os
import sys
import time
from array import array
from collections.abc import Iterable

from numdoctor.snapshot.libraries import MapEntry

# Idle pool workers spin for a while before sleeping in futex(); a spinning thread reports
# "running" and no stack pointer, so we retry briefly.
_RETRIES = 4
_RETRY_SLEEP = 0.003
# The live part of an idle worker's stack is a few KiB; this bounds a pathological case.
_MAX_STACK_BYTES = 256 * 1024


def thread_ids(pid: int | str = "self") -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def _stack_pointer(pid: int | str, tid: int) -> tuple[int, int] | None:
    """(sp, pc) of a blocked thread, or None if it is running or unreadable."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall", encoding="ascii") as fh:
            fields = fh.read().split()
    except OSError:
        return None
    if len(fields) < 3 or fields[0] == "running":
        return None
    try:
        return int(fields[-2], 16), int(fields[-1], 16)
    except ValueError:
        return None


def attribute_threads(
    libraries: dict[str, Iterable[tuple[int, int]]],
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

    def __init__(self, libraries: dict[str, Iterable[tuple[int, int]]], maps: list[MapEntry],
                 pid: int | str = "self", skip_tids: Iterable[int] = ()) -> None:
        self.pid = pid
        self.maps = maps
        self.map_starts = [m.start for m in maps]
        self.spans = sorted((start, end, path) for path, ranges in libraries.items()
                            for start, end in ranges)
        self.starts = [s[0] for s in self.spans]
        self.counts = dict.fromkeys(libraries, 0)
        self.skip = set(skip_tids)
        self.examined = 0
        self.unreadable: list[int] = []
        self.running: list[int] = []
        self.mem = -1
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        if not self.spans:
            return
        try:
            self.mem = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY)
        except OSError:
            self.unreadable = [t for t in thread_ids(self.pid) if t not in self.skip]
            return
        self._read([t for t in thread_ids(self.pid) if t not in self.skip])

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
            if self.mem >= 0:
                os.close(self.mem)
                self.mem = -1
        return self.counts, self.examined, self.unreadable

    def _read(self, tids: list[int]) -> None:
        running = []
        for tid in tids:
            regs = _stack_pointer(self.pid, tid)
            if regs is None:
                running.append(tid)
                continue
            sp, pc = regs
            index = bisect.bisect_right(self.map_starts, sp) - 1
            if index < 0 or not self.maps[index].start <= sp < self.maps[index].end:
                self.unreadable.append(tid)
                continue
            length = min(self.maps[index].end - sp, _MAX_STACK_BYTES)
            try:
                raw = os.pread(self.mem, length - length % 8, sp)
            except OSError:
                self.unreadable.append(tid)
                continue
            self.examined += 1
            words = array("Q")
            words.frombytes(raw[: len(raw) - len(raw) % 8])
            for path in _libraries_hit(words, pc, self.spans, self.starts):
                self.counts[path] += 1
        self.running = running


def _libraries_hit(
    words: array, pc: int, spans: list[tuple[int, int, str]], starts: list[int]
) -> set[str]:
    low = spans[0][0]
    high = max(end for _, end, _ in spans)
    hits: set[str] = set()
    for word in (pc, *words):
        if low <= word < high:
            i = bisect.bisect_right(starts, word) - 1
            if i >= 0 and word < spans[i][1]:
                hits.add(spans[i][2])
                if len(hits) == len(spans):
                    break
    return hits


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
