"""fork() after an OpenMP pool has started."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import describe_library
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.model import Snapshot


@rule("FORK001", "fork() after a GNU OpenMP pool started deadlocks the child", Severity.WARNING)
def fork_after_openmp(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    The multiprocessing start method is `fork` and a GNU libgomp thread pool is already
    running in this process. `fork()` copies only the calling thread; the child inherits
    libgomp's state saying that a pool of N threads exists, and the first parallel region in
    the child waits forever in a barrier for threads that are not there (GCC bug 60035,
    OpenBLAS#240, pytorch#17199). The child hangs at 0 % CPU with no message.

    This covers `multiprocessing.Pool`, `ProcessPoolExecutor`, PyTorch `DataLoader(num_workers
    >0)` and joblib's multiprocessing backend on Linux (where `fork` is the default before
    Python 3.14). Intel's and LLVM's runtimes re-initialise after fork and are not affected.

    **Fix.** Use the `spawn` or `forkserver` start method
    (`multiprocessing.set_start_method("spawn")`, `DataLoader(multiprocessing_context="spawn")`),
    or do no OpenMP work in the parent before forking, or set `OMP_NUM_THREADS=1` in the parent
    (no pool is started).
    """
    if snapshot.process.start_method != "fork":
        return
    started = [lib for lib in snapshot.libs("openmp", "gnu") if lib.active_threads]
    if not started:
        return
    method = "fork" + ("" if snapshot.process.start_method_explicit else " (platform default)")
    yield rule.finding(
        [f"multiprocessing start method: {method}",
         *(describe_library(lib) for lib in started)],
        why="A child created with fork() will deadlock at its first OpenMP parallel region.",
        fix='multiprocessing.set_start_method("spawn") (or "forkserver") before creating '
            'workers; DataLoader(..., multiprocessing_context="spawn"); or OMP_NUM_THREADS=1.',
    )
