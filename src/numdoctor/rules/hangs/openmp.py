"""FORK001 reached through the wait graph: a forked child waiting in GNU OpenMP for pool
threads it does not have (the code and its explanation live in numdoctor.rules.fork)."""

from __future__ import annotations

import os
import re

from numdoctor.core.waits.frames import own_frames
from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import cap, chain_to, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Node, Path, Tree

_BLAS_CALL = re.compile(r"gemm|gemv|syrk|trsm|potrf|getrf|gesdd|gesvd|syev|blas|lapack|mkl_",
                        re.I)


def owner(path: str) -> str:
    """'torch 2.13.0', 'libgomp1 12.2.0-14 (apt)' for a file a package manager installed,
    '' otherwise."""
    from numdoctor.snapshot.ownership import owning_package
    from numdoctor.snapshot.package_names import package_label

    found = owning_package(path) if path else None
    return package_label(*found) if found else ""


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    stuck = [n for n, w in tree.waits.items() if w.kind == W.OPENMP_FORK]
    if not stuck:
        return None
    node = next((n for n in path.nodes if n in stuck), stuck[0])
    return _verdict(tree, path, node, [n for n in stuck if n[0] != node[0]])


def _verdict(tree: Tree, path: Path, node: Node, others: list[Node]) -> Verdict:
    from numdoctor.rules.registry import get

    pid = node[0]
    process = tree.processes[pid]
    thread = tree.threads[node]
    frames = own_frames(thread.frames)
    gomp = W.in_gnu_openmp(frames)
    assert gomp is not None
    index = frames.index(gomp)
    blas = next((f for f in frames[index + 1:] if f.kind == "native" and f.function
                 and _BLAS_CALL.search(f.function)), None)
    python = next((f for f in frames if f.kind == "python"), None)
    parent = process.forked_from
    threads = (f" while it had {process.threads_at_fork} threads"
               if process.threads_at_fork else "")
    cpu = f"{thread.cpu:.0%}" if thread.cpu is not None else "no"
    parent_process = tree.processes.get(parent) if parent is not None else None
    lines = [
        f"pid {pid} ({process.command[:100]}) was forked from pid {parent}"
        + (f" ({parent_process.command[:100]})" if parent_process is not None else "")
        + threads,
        f"it used {cpu} CPU over the last {tree.facts.window:g} s and its thread "
        f"{thread.tid} waits in {os.path.basename(gomp.file)} ({gomp.file}) "
        f"[{owner(gomp.file) or 'installed by no package manager'}]",
    ]
    if blas is not None:
        lines.append(f"under a BLAS call: {blas.function} in {os.path.basename(blas.file)} "
                     f"[{owner(blas.file)}]")
    if python is not None:
        lines.append(f"called from {python.label()} ({python.file})")
    if path.nodes[0] != node and node in path.nodes:
        lines += chain_to(tree, path, node)[:-1]
    lines.append(phrases.stack_line(tree, node))
    for other in others[:3]:
        lines.append(f"also stuck the same way: {phrases.who_process(tree, other[0])}")
    title = (f"Forked child pid {pid} is deadlocked in GNU OpenMP (libgomp)"
             + (f" under {blas.function}" if blas is not None else ""))
    finding = get("FORK001").finding(
        cap(lines), severity=Severity.ERROR, title=title, where=f"pid {pid}",
        why="fork() copied only the calling thread: libgomp in the child still believes its "
            "thread pool exists and waits forever at a barrier for threads that are not "
            "there (GCC bug 60035).",
        fix='Start workers with "spawn" or "forkserver" (multiprocessing.set_start_method('
            '"spawn"), DataLoader(multiprocessing_context="spawn")), or set '
            "OMP_NUM_THREADS=1 in the parent so no pool starts before the fork.")
    root = root_at(tree, node, doing="waits in GNU OpenMP (libgomp) for pool threads it "
                                     "does not have")
    # Certain when the child lacks the pool: fork() left it fewer threads than its parent had.
    alive = len([t for t in process.threads if t.tid > 0]) or 1
    proven = alive == 1 or (process.threads_at_fork or 0) > alive
    return Verdict(finding, root, proven=proven,
                   summary=f"forked child pid {pid} is deadlocked in GNU OpenMP (libgomp)"
                   + (f" at {root.where}" if root.where else ""))
