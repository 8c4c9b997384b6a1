"""Which libraries a thread is in, read from its live stack through /proc, without a tool.

A thread blocked in a system call has its stack pointer and program counter in
/proc/<pid>/task/<tid>/syscall. Its live stack (from the stack pointer to the end of its
mapping) holds the return addresses of every frame it is in, among other words; the words that
point into a library's code say which libraries the thread is inside. The result is
approximate (a stale word can point into code too) but needs no ptrace tool, and works on our
own process and on any process we may read (our descendants).

Two users: `check` asks which thread pools have started (a parked libgomp worker has
`gomp_thread_start` on its stack); the dump ladder's last rung shows, per thread, the
libraries it waits in when no tool gives function names.
"""

from __future__ import annotations

import bisect
import os
from array import array
from collections.abc import Iterable

from numdoctor.core.procfs import MapEntry, read_maps, stack_pointer, thread_file, thread_ids

# `check`'s collector child imports this module after the user's modules, on the path to its
# answer: the frame model (dataclasses) loads only where the dump ladder builds frames.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from numdoctor.core.stacks.model import ThreadStack


class CodeRanges:
    """Address -> the library whose code is mapped there."""

    def __init__(self, spans: Iterable[tuple[int, int, str]]) -> None:
        self.spans = sorted(spans)
        self.starts = [s[0] for s in self.spans]
        self.low = self.spans[0][0] if self.spans else 0
        self.high = max((end for _, end, _ in self.spans), default=0)

    @classmethod
    def of_maps(cls, maps: list[MapEntry]) -> CodeRanges:
        """Every executable file mapping."""
        return cls((m.start, m.end, m.path) for m in maps
                   if "x" in m.perms and m.path.startswith("/"))

    def library(self, address: int) -> str:
        if not self.low <= address < self.high:
            return ""
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.spans[i][1]:
            return self.spans[i][2]
        return ""

    def libraries_in(self, words: Iterable[int], limit: int | None = None) -> list[str]:
        """The libraries the words point into, each once, in the order first met (the top
        of the stack first); stops once `limit` libraries were found."""
        found: list[str] = []
        seen: set[str] = set()
        for word in words:
            path = self.library(word)
            if path and path not in seen:
                seen.add(path)
                found.append(path)
                if limit is not None and len(found) >= limit:
                    break
        return found


class LiveStacks:
    """Reads threads' live stacks of one process (open /proc/<pid>/mem once, read many)."""

    def __init__(self, pid: int | str, maps: list[MapEntry], max_bytes: int) -> None:
        self.pid = pid
        self.writable = sorted((m.start, m.end) for m in maps if "w" in m.perms)
        self.writable_starts = [s for s, _ in self.writable]
        self.max_bytes = max_bytes
        try:
            self.mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError:
            self.mem = -1

    @property
    def readable(self) -> bool:
        return self.mem >= 0

    def words(self, sp: int) -> array[int] | None:
        """The 8-byte words from `sp` up to the end of its mapping (at most max_bytes)."""
        if self.mem < 0:
            return None
        i = bisect.bisect_right(self.writable_starts, sp) - 1
        if i < 0 or not self.writable[i][0] <= sp < self.writable[i][1]:
            return None
        length = min(self.writable[i][1] - sp, self.max_bytes)
        try:
            raw = os.pread(self.mem, length - length % 8, sp)
        except OSError:
            return None
        words = array("Q")
        words.frombytes(raw[: len(raw) - len(raw) % 8])
        return words

    def close(self) -> None:
        if self.mem >= 0:
            os.close(self.mem)
            self.mem = -1


# The dump ladder's rung: enough of the stack to see the libraries a waiting thread is in.
_SCAN_BYTES = 32 * 1024
_SCAN_LIBRARIES = 16


def scan_native(pid: int, maps: list[MapEntry] | None = None) -> list[ThreadStack]:
    """Per thread: its state and the libraries whose code its stack points into."""
    from numdoctor.core.stacks.model import Frame, ThreadStack

    try:
        maps = maps if maps is not None else read_maps(pid)
    except OSError:
        return []
    tids = thread_ids(pid)
    if not tids:
        return []
    ranges = CodeRanges.of_maps(maps)
    stacks = LiveStacks(pid, maps, _SCAN_BYTES)
    threads = []
    try:
        for tid in tids:
            thread = ThreadStack(id=str(tid), native_id=tid,
                                 name=thread_file(pid, tid, "comm"), source="stack scan")
            threads.append(thread)
            regs = stack_pointer(pid, tid)
            if regs is None:
                thread.state = "running"
                continue
            wchan = thread_file(pid, tid, "wchan")
            thread.state = f"waiting ({wchan})" if wchan and wchan != "0" else "waiting"
            sp, pc = regs
            words = stacks.words(sp)
            libraries = ranges.libraries_in([pc, *(words or ())], limit=_SCAN_LIBRARIES)
            thread.frames = [Frame("native", "", path, approximate=True) for path in libraries]
    finally:
        stacks.close()
    return threads
