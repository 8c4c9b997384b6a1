"""Nothing recognised: HANG001, with who waits for whom as far as it could be followed."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

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


def diagnose(tree: Tree, path: Path) -> Verdict:
    root = path.root
    where = phrases.basename_line(tree.wait(root))
    title = (f"No progress: {phrases.who(tree, root)} {phrases.doing(tree, root)}"
             if where or len(path.nodes) > 1 else
             "No progress and no CPU use: the program is blocked or waiting")
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    lines += bystanders(tree, set(path.nodes), limit=6)
    finding = HANG001.finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="Every thread is blocked; numdoctor could not tell on what for certain.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])
