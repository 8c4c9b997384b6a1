"""A thread the program waits on is busy: a busy loop, or a long computation."""

from __future__ import annotations

from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    from numdoctor.rules.registry import get

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
    finding = get("HANG002").finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="The thread the program waits on keeps a CPU busy without finishing: a busy-wait "
            "or infinite loop at this line, or a computation much longer than expected.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
