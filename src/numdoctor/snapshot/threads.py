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
    starts: list[int] = []
    spans: list[tuple[int, int, str]] = []
    for path, ranges in libraries.items():
        for start, end in ranges:
            spans.append((start, end, path))
    spans.sort()
    starts = [s[0] for s in spans]
    counts = dict.fromkeys(libraries, 0)
    if not spans:
        return counts, 0, []

    skip = set(skip_tids)
    examined = 0
    unreadable: list[int] = []
    map_starts = [m.start for m in maps]
    try:
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return counts, 0, [t for t in thread_ids(pid) if t not in skip]
    try:
        for tid in thread_ids(pid):
            if tid in skip:
                continue
            regs = None
            for attempt in range(_RETRIES):
                regs = _stack_pointer(pid, tid)
                if regs is not None:
                    break
                if attempt + 1 < _RETRIES:
                    time.sleep(_RETRY_SLEEP)
            if regs is None:
                unreadable.append(tid)
                continue
            sp, pc = regs
            index = bisect.bisect_right(map_starts, sp) - 1
            if index < 0 or not maps[index].start <= sp < maps[index].end:
                unreadable.append(tid)
                continue
            length = min(maps[index].end - sp, _MAX_STACK_BYTES)
            try:
                raw = os.pread(mem, length - length % 8, sp)
            except OSError:
                unreadable.append(tid)
                continue
            examined += 1
            words = array("Q")
            words.frombytes(raw[: len(raw) - len(raw) % 8])
            hits = _libraries_hit(words, pc, spans, starts)
            for path in hits:
                counts[path] += 1
    finally:
        os.close(mem)
    return counts, examined, unreadable


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

    ids = {t.native_id for t in threading.enumerate() if t.native_id is not None}
    ids.add(threading.get_native_id())
    return ids


if sys.platform != "linux":  # pragma: no cover - /proc is Linux-only

    def attribute_threads(libraries, maps, pid="self", skip_tids=()):  # type: ignore[no-redef]
        return dict.fromkeys(libraries, 0), 0, []
