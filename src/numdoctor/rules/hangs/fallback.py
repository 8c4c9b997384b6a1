"""Nothing recognised: HANG001, with who waits for whom as far as it could be followed."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

HANG001 = declare(
    "HANG001", "No progress: the program is blocked where the wait path ends",
    Severity.ERROR,
    """
    For `--hang-timeout` seconds the program wrote no output, called no
    `numdoctor.heartbeat()`, and its process tree did no work (no process above 10 % of a CPU
    on average, all together below 30 %), and none of the specific diagnoses (HANG004 to
    HANG013, FORK001) recognised what it waits for.

    numdoctor still followed who waits for whom as far as the stacks and /proc allow: the
    main thread waits for a thread (`join`), a child process (`wait`), a future or queue fed by
    a pool, a peer across a pipe or socket; that one waits in turn... The title names where
    that path ends — the thread or process that everyone else is waiting on, what it is doing
    and its file:line — and the evidence shows each step of the path, then the bystanders (the
    other waiting threads, briefly). The report keeps the full stacks of every thread.

    **Why it matters.** Unlike HANG004 (a lock cycle) or HANG008 (a pool waiting for a dead
    worker), this is not a proof: the process at the end of the path may wait for something
    outside the tree (input, a remote service, a file lock held by another program) that will
    come. It is where to look first.

    **Fix.** Look at the named file:line: why does it wait there, and for whom? If the program
    is in fact waiting legitimately, raise `--hang-timeout` or call `numdoctor.heartbeat()`
    while it waits.
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
