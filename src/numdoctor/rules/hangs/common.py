"""Pieces every class of hang uses to state its finding."""

from __future__ import annotations

from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs.diagnosis import Root
from numdoctor.rules.hangs.graph import Node, Path, Tree

EVIDENCE_LIMIT = 14  # lines: the chain, the root's stack, a few bystanders


def root_at(tree: Tree, node: Node, doing: str = "") -> Root:
    wait = tree.wait(node)
    return Root(pid=node[0], tid=node[1] if node[1] > 0 else None,
                role=phrases.who(tree, node), where=phrases.basename_line(wait),
                doing=doing or phrases.doing(tree, node))


def chain_to(tree: Tree, path: Path, node: Node) -> list[str]:
    """The who-waits-for-whom lines from the main thread to `node`, when the walk reached it;
    else the node's own line."""
    if node in path.nodes:
        index = path.nodes.index(node)
        trimmed = Path(path.nodes[:index + 1], path.edges[:index],
                       cycle=path.cycle if index == len(path.nodes) - 1 else [],
                       cycle_edge=path.cycle_edge if index == len(path.nodes) - 1 else None)
        return phrases.path_lines(tree, trimmed)
    return [f"{phrases.who(tree, node)} {phrases.doing(tree, node)}"]


def bystanders(tree: Tree, shown: set[Node], limit: int = 4) -> list[str]:
    """Other processes' main threads that wait in the program's code, briefly."""
    lines = []
    for pid in tree.processes:
        node = tree.principal(pid)
        if node is None or node in shown:
            continue
        wait = tree.wait(node)
        if wait.helper:
            continue
        lines.append(f"also: {phrases.who(tree, node)} {phrases.doing(tree, node)}")
        if len(lines) >= limit:
            break
    return lines


def cap(lines: list[str]) -> list[str]:
    return lines[:EVIDENCE_LIMIT]
