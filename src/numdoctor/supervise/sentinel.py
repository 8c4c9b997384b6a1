"""Certain deadlocks, found without a timeout.

While a supervised tree is idle, the sentinel looks at who waits for whom (the same
examination an incident makes: stacks, the kernel's view of every wait, the hang analysis).
Only a *proven* deadlock counts: a lock cycle, a forked child waiting for OpenMP threads it
does not have, a pool waiting for a dead worker's task, ranks in different collectives or
waiting for a rank that is gone. A program that merely waits (a sleep, input, a slow server)
is never proven, so it is never stopped without a timeout.

A proof is confirmed by a second look a second later (the same code and the same root,
still idle) before anyone acts on it: a moment caught in passing is not a deadlock.

Looks cost CPU (a stack dump of every process), so they are rationed: none while the tree
works or the program shows progress (output, heartbeats: a program that goes on is not one
that can never continue), the first after a second of idleness, later ones ever further
apart while the program keeps waiting, and never more than half a percent of the
supervision's time (but a proof always gets the look that confirms it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from numdoctor.core.procfs import thread_file, thread_ids

if TYPE_CHECKING:
    from numdoctor.core.monitor import Proc
    from numdoctor.supervise.watch import Examination, Watch

IDLE_BEFORE = 1.0  # seconds the tree must have been idle before a look
CONFIRM_AFTER = 1.0  # seconds between a proof and the look that confirms it
FIRST_BACKOFF = 4.0  # seconds before the next look after one that proved nothing
LONGEST_BACKOFF = 120.0
BUDGET = 0.005  # share of the supervision's time the looks may take
HEAD_START = 1.0  # seconds of looks allowed before the budget applies


class Sentinel:
    def __init__(self, watch: Watch, *, pace: float = 1.0) -> None:
        """`pace` scales the waits before a look and before the confirming look."""
        self.watch = watch
        self.idle_before = IDLE_BEFORE * pace
        self.confirm_after = CONFIRM_AFTER * pace
        self.started = time.monotonic()
        self.next_look = 0.0
        self.backoff = FIRST_BACKOFF
        self.candidate: Examination | None = None
        self.reported: set[tuple[str, int, int | None]] = set()  # with --keep-running
        self.looks = 0
        self.last_look = 0.0  # when the last look began (or progress was last taken in)
        self.unproven: tuple[tuple[int, int, int, str], ...] | None = None  # see _waits
        self.spent = 0.0  # seconds of looks

    def check(self, now: float, last_progress: float | None = None) -> Examination | None:
        """A confirmed proof of deadlock, or None. Call after each sample of the tree.
        `last_progress`: when the program last showed progress (output, a heartbeat)."""
        idle_for = self.watch.monitor.idle_for(now)
        moved_on = last_progress is not None and last_progress > self.last_look
        if idle_for is None or moved_on:
            # The tree works, or shows progress since the last look (a wait that uses no
            # CPU, such as its turn in a probe): what was seen is stale; start afresh.
            self.candidate = None
            self.backoff = FIRST_BACKOFF
            self.next_look = 0.0
            if moved_on:
                self.last_look = now
            if idle_for is None:
                return None
        if last_progress is not None and now - last_progress < self.idle_before:
            return None  # a program that makes progress is not deadlocked
        if idle_for < self.idle_before or now < self.next_look:
            return None
        if self.watch.monitor.discover(now):
            # A process started since the last scan (a worker the idle parent waits for):
            # the samples do not hold its CPU yet, so "idle" is not known. The next ones will.
            return None
        if self.candidate is None and self.spent > HEAD_START + BUDGET * (now - self.started):
            # A long wait: the budget refills with time. (A proof waiting for its confirmation
            # gets its second look regardless: a look at a PyTorch job can take more than the
            # head start, and the proof would otherwise wait minutes.)
            return None
        waits = _waits(self.watch.monitor.live())
        if waits is not None and waits == self.unproven and self.candidate is None:
            # Every thread waits exactly where it waited at the last look, which proved
            # nothing (a program that sleeps between bursts of work): the same stacks, the
            # same verdict, without a stack dump.
            self.next_look = now + self.backoff
            self.backoff = min(self.backoff * 2, LONGEST_BACKOFF)
            return None
        begun = self.last_look = time.monotonic()
        try:
            seen = self.watch.examine(window=min(max(idle_for, 1.0), 10.0),
                                      confirmed=self.candidate is not None, look=True)
        except Exception as exc:  # a failed look must never end the supervision
            self.watch.notes.append(f"a look for deadlocks failed: {type(exc).__name__}: {exc}")
            self.next_look = now + LONGEST_BACKOFF
            return None
        finally:
            self.looks += 1
            self.spent += time.monotonic() - begun
            self.watch.timings["deadlock_looks"] = round(self.spent, 3)
        if seen.diagnosis.proven and _key(seen) not in self.reported:
            if self.candidate is not None and _key(self.candidate) == _key(seen) and \
                    self.watch.monitor.idle_for(time.monotonic()) is not None:
                self.candidate = None
                self.reported.add(_key(seen))
                return seen
            self.candidate = seen
            self.next_look = time.monotonic() + self.confirm_after
            return None
        self.candidate = None
        self.next_look = time.monotonic() + self.backoff
        if not _busy(seen):
            # Idle and nothing proven: a wait that may last; look ever less often. (A busy root
            # is a program still at work, start-up or teardown: no reason to look less.)
            self.backoff = min(self.backoff * 2, LONGEST_BACKOFF)
            self.unproven = waits
        return None


def _waits(procs: Iterable[Proc]) -> tuple[tuple[int, int, int, str], ...] | None:
    """Where each thread of the tree waits, as the kernel tells it: the system call, its
    arguments and the stack and instruction pointers (/proc/<pid>/task/<tid>/syscall). Equal
    readings mean the same stacks; None where a thread runs or a file cannot be read."""
    found = []
    for proc in sorted(procs, key=lambda p: p.pid):
        tids = thread_ids(proc.pid)
        if not tids:
            return None
        for tid in tids:
            reading = thread_file(proc.pid, tid, "syscall")
            if not reading or reading.startswith("running"):
                return None
            found.append((proc.pid, proc.start, tid, _same_wait(reading)))
    return tuple(found)


# futex(2) by architecture: a condition variable's waiters alternate between two adjacent
# futex words (glibc's two signal groups), 4 bytes apart; the same wait, for our purpose.
_FUTEX = {"x86_64": "202", "aarch64": "98", "ppc64le": "221", "s390x": "238"}.get(
    os.uname().machine)


def _same_wait(reading: str) -> str:
    parts = reading.split()
    if _FUTEX is not None and len(parts) > 1 and parts[0] == _FUTEX:
        try:
            parts[1] = f"{int(parts[1], 16) & ~0x7:#x}"
        except ValueError:
            pass
    return " ".join(parts)


def _busy(seen: Examination) -> bool:
    from numdoctor.rules.hangs.busy import HANG002  # loaded by the look already

    findings = seen.diagnosis.findings
    return bool(findings) and findings[0].code == HANG002.code


def _key(seen: Examination) -> tuple[str, int, int | None]:
    diagnosis = seen.diagnosis
    code = diagnosis.findings[0].code if diagnosis.findings else ""
    root = diagnosis.root
    return (code, root.pid if root else 0, root.tid if root else None)
