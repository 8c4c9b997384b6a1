"""What the walk from the main thread says: who consumes, who was reached, why it ended."""

from __future__ import annotations

from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.graph import Edge, Node, Path, Tree

# Waits for data or a signal another thread or process must produce.
DATA_FLOW = frozenset({W.QUEUE, W.NOTIFY, W.FUTURE, W.POOL, W.CONNECTION, W.MP_LOCK, W.LOCK,
                       W.DATALOADER, W.TFDATA})
# Waits for another thread or process to end.
STRUCTURAL = frozenset({W.JOIN, W.CHILD, W.SUPERVISOR})

_WAITS_FOR = {
    W.QUEUE: "on a queue", W.NOTIFY: "for a signal", W.FUTURE: "for a future",
    W.POOL: "for multiprocessing.Pool results", W.CONNECTION: "on a multiprocessing "
    "queue/connection", W.LOCK: "for a lock", W.MP_LOCK: "for a multiprocessing lock",
    W.JOIN: "for a thread to finish", W.IO: "on a pipe or socket",
    W.DATALOADER: "for the next DataLoader batch", W.TFDATA: "for the next tf.data element",
    W.CHILD: "for a child process",
}


def consumer_edge(path: Path, kinds: frozenset[str]) -> int | None:
    """Index of the last edge of the walk whose kind is in `kinds`."""
    found = None
    for index, edge in enumerate(path.edges):
        if edge.kind in kinds:
            found = index
    return found


def what(tree: Tree, node: Node) -> str:
    """'waits on a queue at prog.py:11' for a consumer."""
    wait = tree.wait(node)
    place = f" at {phrases.basename_line(wait)}" if wait.site is not None else ""
    return f"waits {_WAITS_FOR.get(wait.kind, 'for another thread')}{place}"


def closing(tree: Tree, path: Path) -> str:
    """Why the root cannot go on, when the walk says so."""
    root = path.root
    if path.cycle and path.cycle_edge is not None and path.cycle_edge.target is not None:
        target = path.cycle_edge.target
        if target != root:
            return (f"; the only one that could release it, {phrases.who(tree, target)}, "
                    "waits for it in turn")
    wait = tree.wait(root)
    thread = tree.threads[root]
    if wait.kind in (W.QUEUE, W.NOTIFY) and not tree.edges(root):
        return "; no other thread of its process can " + (
            "put into it" if wait.kind == W.QUEUE else "set it")
    if wait.kind in (W.IO, W.CONNECTION) and thread.waits_on is not None:
        peers = {p for p, _ in thread.waits_on.peers}
        if peers and peers <= {root[0]}:
            return "; only its own process holds the other end"
        if thread.waits_on.peer_gone:
            return "; the other end is closed"
    return ""


def last_edge(path: Path) -> Edge | None:
    return path.edges[-1] if path.edges else None
