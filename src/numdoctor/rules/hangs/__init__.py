"""Who waits for whom in a stuck process tree, and the one place to look.

    diagnosis = analyse(facts)   # facts: numdoctor.core.waits.TreeFacts

A pure function of the facts: every thread's wait is classified from its frames, the
kernel's view and its source (`waits`), the waits become edges between threads and processes
(`graph`), and the walk from the main thread finds the root. Each class of hang is one module
with its own code; the first that recognises the situation writes the headline, and a
certain deadlock found anywhere in the tree comes first.
"""

from __future__ import annotations

from numdoctor.core.waits.model import TreeFacts
from numdoctor.rules.hangs import (
    busy,
    collectives,
    dataloader,
    fallback,
    locks,
    openmp,
    pools,
    producers,
    tfdata,
    waiting,
)
from numdoctor.rules.hangs.diagnosis import HangDiagnosis, Root, Verdict
from numdoctor.rules.hangs.graph import Tree, start_node, walk

# In this order: certain deadlocks first, then the class of the main thread's wait.
_CLASSES = (locks, openmp, pools, collectives, dataloader, tfdata, producers, waiting, busy)


def analyse(facts: TreeFacts) -> HangDiagnosis:
    """The diagnosis of a stuck tree: findings with the headline first, and `proven` only
    when the program can never continue."""
    tree = Tree(facts)
    start = start_node(tree)
    if start is None:
        summary = "no process of the tree could be read"
        finding = fallback.HANG001.finding(
            [f"the facts hold {len(facts.processes)} process(es) and no thread"],
            title="No progress, and no thread of the program could be read")
        return HangDiagnosis(findings=[finding], summary=summary)
    path = walk(tree, start)
    verdicts: list[Verdict] = []
    for module in _CLASSES:
        verdict = module.diagnose(tree, path)
        if verdict is not None:
            verdicts.append(verdict)
    certain = [v for v in verdicts if v.proven]
    if certain:
        headline = certain[0]
    elif verdicts:
        headline = verdicts[0]
    else:
        headline = fallback.diagnose(tree, path)
    findings = [headline.finding]
    roots = {(headline.root.pid, headline.root.tid)}
    for other in certain[1:]:
        if (other.root.pid, other.root.tid) not in roots and \
                other.finding.code != headline.finding.code:
            findings.append(other.finding)
            roots.add((other.root.pid, other.root.tid))
    return HangDiagnosis(findings=findings, proven=headline.proven, root=headline.root,
                         summary=headline.summary)


__all__ = ["HangDiagnosis", "Root", "analyse"]
