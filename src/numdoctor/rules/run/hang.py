"""Hangs: no progress with no CPU (HANG001), spinning (HANG002), past --timeout (HANG003), and a
forked child deadlocked in GNU OpenMP (FORK001, the same code as `check`'s rule)."""

from __future__ import annotations

import os
import re

from numdoctor.core.facts import ProcView
from numdoctor.core.monitor import IDLE_CPU, IDLE_TREE_CPU, SPIN_CPU
from numdoctor.core.stacks.model import Frame, ProcessStacks, ThreadStack
from numdoctor.findings import Finding, Severity
from numdoctor.rules.fork import fork_after_openmp
from numdoctor.rules.registry import Stage, declare
from numdoctor.rules.run._text import chain, main_thread, process_lines
from numdoctor.snapshot.libraries import classify as classify_library

_BLAS_CALL = re.compile(r"gemm|gemv|syrk|trsm|potrf|getrf|gesdd|gesvd|syev|blas|lapack|mkl_",
                        re.I)
FORK001 = fork_after_openmp.rule  # type: ignore[attr-defined]

HANG001 = declare(
    "HANG001", "The program stopped making progress and uses no CPU (deadlock or wait)",
    Severity.ERROR,
    """
    For `--hang-timeout` seconds the program wrote no output, called no
    `numdoctor.heartbeat()`, and its process tree did no work: no process used more than
    10 % of a CPU on average, and all together less than 30 %. Every thread is waiting: for a
    lock, a condition, a child process, a pipe or socket, or a thread-pool barrier that will
    never be released.

    The evidence names every process of the tree with its CPU use and where its threads wait
    (innermost Python frame, and the native library when the native stack was read); the
    report has the full stacks of every thread of every process.

    **Why it matters.** Nothing will change by waiting longer. The classic causes in numerical
    code: `fork()` after an OpenMP or BLAS pool started (see FORK001), a DataLoader or
    multiprocessing worker blocked on a full queue, a lock taken twice, two OpenMP runtimes in
    one process (OMP001/OMP003), a collective operation (NCCL, MPI, Gloo) that one rank never
    joined.

    **Fix.** Read where the main thread waits and on what; the findings next to this one name
    the cause when numdoctor recognises it. If the program is in fact waiting legitimately
    (input, a remote service), raise `--hang-timeout` or call `numdoctor.heartbeat()` while it
    waits.
    """,
    Stage.RUN,
)

HANG002 = declare(
    "HANG002", "A process spins at full CPU without making progress", Severity.ERROR,
    """
    For the spin timeout (`--spin-timeout`, by default `--hang-timeout`) the program wrote no
    output and called no `numdoctor.heartbeat()`, while at least one of its processes kept a
    CPU busy. It is running, not deadlocked: a busy-wait, a livelock, an infinite loop, or a
    computation much longer than expected.

    numdoctor treats this like a hang (dump, kill, exit 124) but labels it differently, because
    the causes and the fixes differ: the stacks of the busy thread (marked "running" by py-spy)
    show the loop.

    **Why it matters.** Spin-waiting threads (OpenMP's `OMP_WAIT_POLICY=active`, a
    `while not done: pass` loop) burn CPU that other work needs; an infinite loop never ends.

    **Fix.** Look at the busy thread's innermost frames. If the program is in fact computing
    legitimately without output, call `numdoctor.heartbeat()` in its loop, or give a longer
    `--spin-timeout` (`0` reports spinning only at `--timeout`).
    """,
    Stage.RUN,
)

HANG003 = declare(
    "HANG003", "The program ran past its --timeout", Severity.ERROR,
    """
    The hard `--timeout` (wall-clock seconds since the start) expired. numdoctor dumped every
    thread of every process, then killed the whole process tree and exited with status 124,
    like `timeout(1)`.

    The evidence says what the program was doing in the last seconds: still producing output,
    idle (then HANG001 usually explains more) or spinning.

    **Fix.** If the program was still making progress, it simply needs more time. Otherwise
    read the stacks: where the main thread was when time ran out.
    """,
    Stage.RUN,
)


def _in_gnu_openmp(thread: ThreadStack) -> Frame | None:
    """The libgomp frame a thread waits in, when libgomp is among its innermost libraries."""
    libraries = []
    for frame in thread.frames:
        if frame.kind != "native" or not frame.file:
            if frame.kind == "python":
                break
            continue
        if frame.file not in libraries:
            libraries.append(frame.file)
        kind = classify_library(frame.file)
        if kind == ("openmp", "gnu") and len(libraries) <= 3:
            return frame
    return None


def fork_findings(views: list[ProcView], stacks: dict[int, ProcessStacks],
                  window: float) -> list[Finding]:
    """FORK001: a forked child idle in GNU OpenMP (typically under a BLAS call)."""
    found = []
    by_pid = {v.pid: v for v in views}
    for view in views:
        if view.forked_from is None or (view.cpu is not None and view.cpu >= IDLE_CPU):
            continue
        process = stacks.get(view.pid)
        if process is None:
            continue
        for thread in process.threads:
            gomp = _in_gnu_openmp(thread)
            if gomp is None:
                continue
            index = thread.frames.index(gomp)
            blas = next((f for f in thread.frames[index + 1:] if f.kind == "native"
                         and f.function and _BLAS_CALL.search(f.function)), None)
            python = next((f for f in thread.frames if f.kind == "python"), None)
            parent = by_pid.get(view.forked_from)
            threads = (f" while it had {view.threads_at_fork} threads"
                       if view.threads_at_fork else "")
            owner = gomp.package or "not from a pip package"
            evidence = [
                f"{view.label()} was forked from pid {view.forked_from}"
                + (f" ({parent.command})" if parent else "") + threads,
                f"it used {0 if view.cpu is None else view.cpu:.0%} CPU over the last "
                f"{window:g} s and its thread {thread.native_id or thread.id} waits in "
                f"{os.path.basename(gomp.file)} ({gomp.file}) [{owner}]",
            ]
            if blas is not None:
                evidence.append(f"under a BLAS call: {blas.function} in "
                                f"{os.path.basename(blas.file)} [{blas.package}]")
            if python is not None:
                evidence.append(f"called from {python.label()} ({python.file})")
            evidence.append(f"stack ({thread.source}): {chain(thread.frames)}")
            title = (f"Forked child pid {view.pid} is deadlocked in GNU OpenMP (libgomp)"
                     + (f" under {blas.function}" if blas is not None else ""))
            found.append(FORK001.finding(
                evidence, severity=Severity.ERROR, title=title, where=f"pid {view.pid}",
                why="fork() copied only the calling thread: libgomp in the child still "
                    "believes its thread pool exists and waits forever at a barrier for "
                    "threads that are not there (GCC bug 60035).",
                fix='Start workers with "spawn" or "forkserver" '
                    '(multiprocessing.set_start_method("spawn"), '
                    'DataLoader(multiprocessing_context="spawn")), or set OMP_NUM_THREADS=1 '
                    "in the parent so no pool starts before the fork.",
            ))
            break
    return found


def hang_findings(kind: str, *, window: float, silent_for: float, elapsed: float,
                  views: list[ProcView], stacks: dict[int, ProcessStacks],
                  tree_cpu: float | None, timeout: float | None,
                  interpreters: tuple[str, ...]) -> list[Finding]:
    """HANG001 (idle), HANG002 (spinning) or HANG003 (--timeout)."""
    lines = process_lines(views, stacks, window, interpreters)
    main = next((v for v in views if v.role == "main"), views[0] if views else None)
    where = f"pid {main.pid}" if main else ""
    if kind == "hang":
        return [HANG001.finding(
            [f"no output and no heartbeat for {silent_for:.1f} s; the whole tree used "
             f"{(tree_cpu or 0):.1%} of one CPU over the last {window:g} s", *lines],
            title=f"No progress for {silent_for:.1f} s and no CPU use: the program is "
                  "deadlocked or waiting", where=where,
            why="Every thread of every process is blocked; nothing will change by waiting.",
        )]
    if kind == "spinning":
        spinners = [v for v in views if v.cpu is not None and v.cpu >= SPIN_CPU] or \
            sorted((v for v in views if v.cpu), key=lambda v: -(v.cpu or 0))[:1]
        found = []
        for view in spinners:
            process = stacks.get(view.pid)
            threads = process.threads if process else []
            busy = ([t for t in threads if t.state == "running"]
                    or [t for t in threads if t.owns_gil]
                    or ([main_thread(view.pid, process)] if process else []))
            evidence = [f"{view.label()} used {view.cpu:.0%} of a CPU for the last "
                        f"{window:g} s without output or heartbeat"]
            evidence += [f"busy thread {t.native_id or t.id}: {chain(t.frames)}"
                         for t in busy if t is not None]
            found.append(HANG002.finding(
                evidence, where=f"pid {view.pid}",
                title=f"pid {view.pid} spins at {view.cpu:.0%} CPU without progress for "
                      f"{silent_for:.1f} s",
                why="A thread is running without producing output: a busy loop, a livelock, "
                    "or a computation far longer than expected.",
            ))
        return found
    busiest = max((v.cpu or 0.0 for v in views), default=0.0)
    idle = tree_cpu is not None and tree_cpu < IDLE_TREE_CPU and busiest < IDLE_CPU
    state = "idle" if idle else "busy"
    return [HANG003.finding(
        [f"--timeout {timeout:g} s reached after {elapsed:.1f} s",
         f"last output or heartbeat {silent_for:.1f} s before; the tree used "
         f"{(tree_cpu or 0):.0%} of one CPU over the last {window:g} s ({state})", *lines],
        title=f"The program ran past --timeout {timeout:g} s ({state} at the end)", where=where,
    )]
