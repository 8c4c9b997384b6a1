"""A thread the program waits on is busy: a busy loop, or a long computation."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

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


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    root = path.root
    if tree.wait(root).kind != W.BUSY:
        return None
    thread = tree.threads[root]
    cpu = f"{thread.cpu:.0%} CPU" if thread.cpu is not None else "running"
    where = phrases.basename_line(tree.wait(root))
    title = (f"{_cap(phrases.who(tree, root))} is busy ({cpu})"
             + (f" at {where}" if where else "") + ": a busy loop or a long computation")
    if len(path.nodes) > 1:
        title = (f"{_cap(phrases.who(tree, path.nodes[0]))} waits for "
                 f"{phrases.who(tree, root)}, which is busy ({cpu})"
                 + (f" at {where}" if where else ""))
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    lines += bystanders(tree, set(path.nodes))
    finding = HANG002.finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="The thread the program waits on keeps a CPU busy without finishing: a busy-wait "
            "or infinite loop at this line, or a computation much longer than expected.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
