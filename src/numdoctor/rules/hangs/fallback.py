"""Nothing recognised: HANG001, with who waits for whom as far as it could be followed."""

from __future__ import annotations

from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree


def diagnose(tree: Tree, path: Path) -> Verdict:
    from numdoctor.rules.registry import get

    root = path.root
    where = phrases.basename_line(tree.wait(root))
    title = (f"No progress: {phrases.who(tree, root)} {phrases.doing(tree, root)}"
             if where or len(path.nodes) > 1 else
             "No progress and no CPU use: the program is blocked or waiting")
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    lines += bystanders(tree, set(path.nodes), limit=6)
    finding = get("HANG001").finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="Every thread is blocked; numdoctor could not tell on what for certain.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])
