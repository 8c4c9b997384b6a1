"""Lock-order deadlocks: threads each waiting for a lock another of them holds."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import cap, chain_to, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Edge, Node, Path, Tree, _held, _site_text
from numdoctor.rules.registry import Stage, declare

RULE = declare(
    "HANG004", "Threads wait for each other's locks: a lock-order deadlock", Severity.ERROR,
    """
    Two or more threads each hold a lock and wait, without a timeout, for a lock another of
    them holds: thread A is inside `with a:` waiting for `b`, thread B is inside `with b:`
    waiting for `a`. None of them can ever continue. This covers `threading.Lock`, `RLock`
    (reentrant for its owner only), a `Condition` used as a lock (`with cond:`), and
    `multiprocessing.Lock` between processes.

    numdoctor reads which lock each thread takes from the source line of its frame (`with X:`
    or `X.acquire()`), and which locks it holds from the `with` blocks around that line and
    the `acquire()` calls before it in the same function; the kernel says the wait has no
    timeout (a futex wait without a deadline). The evidence gives, for each thread, the line
    where it waits and the lines where it took the locks it holds.

    **Why it matters.** A deadlock never resolves by waiting; a program that takes locks in
    an order that depends on its input (a transfer between two accounts, two caches updated
    in different orders) deadlocks only sometimes, which makes it hard to reproduce.

    **Fix.** Take locks in one global order everywhere (sort them, e.g. by `id()` or by a
    key, before taking them), or hold one lock at a time (copy what you need, release, then
    take the next), or use a single lock for data that is updated together. `acquire(timeout=
    ...)` turns a deadlock into an error you can log, but does not remove it.
    """,
    Stage.RUN,
)


def lock_waiters(tree: Tree) -> list[Node]:
    return [n for n, w in tree.waits.items() if w.kind in (W.LOCK, W.MP_LOCK)]


def _cycles(tree: Tree) -> list[list[Edge]]:
    """Cycles of lock edges among the threads waiting for locks, each once."""
    waiters = set(lock_waiters(tree))
    outgoing = {n: [e for e in tree.edges(n) if e.target in waiters] for n in waiters}
    found: list[list[Edge]] = []
    seen: set[frozenset[Node]] = set()

    def visit(node: Node, trail: list[Edge], on_trail: list[Node]) -> None:
        for edge in outgoing.get(node, []):
            assert edge.target is not None
            if edge.target in on_trail:
                cycle = [*trail[on_trail.index(edge.target):], edge]
                key = frozenset(e.source for e in cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
                continue
            if len(on_trail) < 8:
                visit(edge.target, [*trail, edge], [*on_trail, edge.target])

    for node in sorted(waiters):
        visit(node, [], [node])
    return found


def untimed(tree: Tree, node: Node) -> bool:
    thread = tree.threads[node]
    wait = tree.wait(node)
    if thread.timed is not None:
        return thread.timed is False
    return wait.lock is not None and wait.lock.untimed is True


def _certain(tree: Tree, cycle: list[Edge]) -> bool:
    """Every thread of the cycle waits without a timeout, and where the match between a lock
    taken and a lock held is by last name only (`src.lock` / `dst.lock`), no thread outside
    the cycle could be the holder and the waits are on different locks (futex addresses)."""
    nodes = {e.source for e in cycle}
    if not all(untimed(tree, n) for n in nodes):
        return False
    if all(e.strength == 2 for e in cycle):
        return True
    for edge in cycle:
        candidates = {e.target for e in tree.edges(edge.source)}
        if not candidates <= nodes:
            return False
    addresses = [tree.threads[n].futex for n in nodes]
    known = [a for a in addresses if a]
    return len(known) == len(set(known))


def _anonymous(tree: Tree) -> list[Node] | None:
    """Threads of one process that each hold a lock and wait without a timeout for another,
    when the source cannot say which lock is which (locks passed as arguments: `mine`,
    `following`). Every lock they wait for is held by someone; if no other thread of the
    process holds a lock or could act, the holders are among them: a cycle, by exclusion.
    Required for that: each waits on a different lock (futex address), and every other
    thread of the process is idle or waits too, holding nothing."""
    by_process: dict[int, list[Node]] = {}
    for node in lock_waiters(tree):
        if tree.wait(node).kind == W.LOCK:
            by_process.setdefault(node[0], []).append(node)
    for pid, waiters in by_process.items():
        if len(waiters) < 2:
            continue
        if not all(untimed(tree, n) and _held(tree.threads[n]) for n in waiters):
            continue
        addresses = [tree.threads[n].futex for n in waiters]
        if None in addresses or len(set(addresses)) != len(addresses):
            continue
        others = [n for n in tree.threads_of(pid) if n not in waiters]
        if any(_held(tree.threads[n]) or tree.wait(n).kind == W.BUSY for n in others):
            continue
        return waiters
    return None


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    cycles = _cycles(tree)
    if not cycles:
        anonymous = _anonymous(tree)
        return _by_exclusion(tree, path, anonymous) if anonymous else None
    on_path = [c for c in cycles if any(e.source in path.nodes for e in c)]
    certain = [c for c in cycles if _certain(tree, c)]
    cycle = next((c for c in on_path if c in certain), None) or (
        certain[0] if certain else on_path[0] if on_path else None)
    if cycle is None:
        return None
    proven = cycle in certain
    nodes = [e.source for e in cycle]
    lines = []
    for edge in cycle:
        lines.append(_thread_line(tree, edge))
    entry = next((n for n in path.nodes if n in nodes), None)
    if entry is not None and path.nodes[0] != entry:
        # How the main thread comes to wait for the cycle.
        lines[:0] = chain_to(tree, path, entry)[:-1]
    first = entry or nodes[0]
    if not proven:
        lines.append("not certain: a wait has a timeout, or a lock matched only by its last "
                     "name could be held by another thread")
    lines += [phrases.stack_line(tree, n, 6) for n in nodes[:3]]
    names = [phrases.who(tree, n) for n in nodes]
    if len(cycle) == 2:
        a, b = cycle
        title = (f"Lock-order deadlock: {names[0]} waits at {_where(tree, a.source)} "
                 f"holding {_holding(tree, a.source)}, {names[1]} waits at "
                 f"{_where(tree, b.source)} holding {_holding(tree, b.source)}")
    else:
        title = (f"Lock-order deadlock among {len(cycle)} threads: " + "; ".join(
            f"{n} at {_where(tree, x)}" for n, x in zip(names, nodes, strict=True)))
    if not proven:
        title = "Possible " + title[0].lower() + title[1:]
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {first[0]}",
        why="Each thread holds a lock another of them waits for: none of them can continue.",
        fix="Take the locks in one fixed order everywhere (or hold one at a time); "
            "`acquire(timeout=...)` turns the hang into an error you can see.")
    summary = f"{'lock-order deadlock' if proven else 'possible lock-order deadlock'}: " + \
        ", ".join(f"{n} at {_where(tree, x)}" for n, x in zip(names, nodes, strict=True))
    return Verdict(finding, root_at(tree, first), proven=proven, summary=summary)


def _by_exclusion(tree: Tree, path: Path, nodes: list[Node]) -> Verdict:
    names = [phrases.who(tree, n) for n in nodes]
    title = (f"Lock-order deadlock among {len(nodes)} threads: "
             + "; ".join(f"{n} waits at {_where(tree, x)} holding {_holding(tree, x)}"
                         for n, x in zip(names, nodes, strict=True)))
    lines = []
    entry = next((n for n in path.nodes if n in nodes), None)
    if entry is not None and path.nodes[0] != entry:
        lines += chain_to(tree, path, entry)[:-1]
    for node in nodes:
        held = _held(tree.threads[node])
        lines.append(f"{phrases.who(tree, node)} {phrases.doing(tree, node)}; holds "
                     + ", ".join(f"`{s.expression}` ({_site_text(s)})" for s in held))
    lines.append("each waits, without a timeout, for a different lock, and no other thread "
                 "of the process holds a lock: the locks they wait for are held by each other")
    lines += [phrases.stack_line(tree, n, 6) for n in nodes[:3]]
    first = entry or nodes[0]
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {first[0]}",
        why="Each thread holds a lock another of them waits for: none of them can continue.",
        fix="Take the locks in one fixed order everywhere (or hold one at a time); "
            "`acquire(timeout=...)` turns the hang into an error you can see.")
    summary = "lock-order deadlock: " + ", ".join(
        f"{n} at {_where(tree, x)}" for n, x in zip(names, nodes, strict=True))
    return Verdict(finding, root_at(tree, first), proven=True, summary=summary)


def _where(tree: Tree, node: Node) -> str:
    return phrases.basename_line(tree.wait(node)) or "?"


def _holding(tree: Tree, node: Node) -> str:
    held = _held(tree.threads[node])
    return ", ".join(f"`{s.expression}`" for s in held) or "a lock"


def _thread_line(tree: Tree, edge: Edge) -> str:
    node = edge.source
    held = _held(tree.threads[node])
    holding = "; holds " + ", ".join(f"`{s.expression}` ({_site_text(s)})" for s in held) \
        if held else ""
    assert edge.target is not None
    lock = tree.wait(node).lock
    return (f"{phrases.who(tree, node)} {phrases.doing(tree, node)}{holding}; "
            f"`{lock.expression if lock is not None else '?'}` is held "
            f"by {phrases.who(tree, edge.target)}")
