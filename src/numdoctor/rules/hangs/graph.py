"""Who waits for whom: edges from each waiting thread to the threads (or dead processes)
that would release it, and the walk from the program's main thread to the root.

Edges by kind of wait:
- a lock: the threads whose source holds a lock written the same way (`with b:` enclosing
  their line) — exactly, or by its last name (`source.guard` and `target.guard` are both
  "guard" locks of some account);
- an Event/Condition/Queue/join in one process: the other threads of the process that run
  the program's code (a framework's idle helper threads never put into a user's queue);
- a future: the pool threads or processes running a task; a Pool or DataLoader result: the
  worker processes that are not idle, and the workers that died;
- a pipe or socket: the processes holding its other end; a child: that child;
- a collective: the other ranks of the job that are not in the same call, and ranks gone;
- torchrun's agent: the ranks it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from numdoctor.core.waits.frames import short, where
from numdoctor.core.waits.model import Fate, LockSite, ProcessFacts, ThreadFacts, TreeFacts
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.roles import Roles

Node = tuple[int, int]  # (pid, tid)


@dataclass
class Edge:
    source: Node
    kind: str  # the kind of the source's wait
    target: Node | None = None
    fate: Fate | None = None  # the awaited process is gone
    why: str = ""  # "holds `second` (with second: at lock_order.py:18)"
    strength: int = 2  # lock edges: 2 exact name, 1 same last name


@dataclass
class Path:
    nodes: list[Node]
    edges: list[Edge]  # edges[i] goes from nodes[i] to nodes[i + 1] (or to a fate)
    cycle: list[Node] = field(default_factory=list)  # the walk came back to these nodes
    cycle_edge: Edge | None = None  # the edge that closed the cycle
    dead: Fate | None = None  # the walk ended at a process that is gone

    @property
    def root(self) -> Node:
        return self.nodes[-1]


def _held(thread: ThreadFacts) -> list[LockSite]:
    """The locks a thread's own frames hold, outermost first."""
    held: list[LockSite] = []
    for context in thread.contexts:
        held.extend(context.holding)
    return held


def _last_name(expression: str) -> str:
    return expression.rsplit(".", 1)[-1].split("[", 1)[0]


def same_lock(wanted: str, held: str) -> int:
    """2: written the same; 1: the same last name (`a.lock`, `b.lock`); 0: different."""
    if wanted == held:
        return 2
    if _last_name(wanted) == _last_name(held) and ("." in wanted or "." in held):
        return 1
    return 0


def abnormal(fate: Fate) -> bool:
    return fate.signal is not None or (fate.exit_code is not None and fate.exit_code != 0)


class Tree:
    """The facts with every thread's wait classified, and the edges between them."""

    def __init__(self, facts: TreeFacts) -> None:
        self.facts = facts
        self.processes: dict[int, ProcessFacts] = {p.pid: p for p in facts.processes}
        self.threads: dict[Node, ThreadFacts] = {}
        self.waits: dict[Node, W.Wait] = {}
        for process in facts.processes:
            for thread in process.threads:
                node = (process.pid, thread.tid)
                self.threads[node] = thread
                self.waits[node] = W.classify(process, thread)
        self.roles = Roles(facts, self.waits)
        self.children: dict[int, list[int]] = {}
        for process in facts.processes:
            self.children.setdefault(process.ppid, []).append(process.pid)
        alive = set(self.processes)
        self.gone = [f for f in facts.fates if f.pid not in alive]

    # -- lookups -----------------------------------------------------------------------------
    def wait(self, node: Node) -> W.Wait:
        return self.waits[node]

    def threads_of(self, pid: int) -> list[Node]:
        process = self.processes.get(pid)
        return [(pid, t.tid) for t in process.threads] if process else []

    def principal(self, pid: int) -> Node | None:
        """The thread that speaks for a process: its main thread, unless that is a helper
        and another thread runs the program's code."""
        nodes = self.threads_of(pid)
        if not nodes:
            return None
        main = next((n for n in nodes if n[1] == pid), None) or next(
            (n for n in nodes if n[1] < 0 and self.threads[n].stack is not None
             and self.threads[n].stack.name == "MainThread"), None)  # type: ignore[union-attr]
        if main is not None and not self.waits[main].helper:
            return main
        working = [n for n in nodes if not self.waits[n].helper and
                   self.waits[n].site is not None]
        return working[0] if working else (main or nodes[0])

    def dead_children(self, pid: int) -> list[Fate]:
        """Children of `pid` that died abnormally and may have been its workers: a child
        known to have run another program (`false`, a compiler) is not a worker."""
        parent = self.processes.get(pid)
        program = _program(parent.command) if parent is not None else ""
        return [f for f in self.gone if f.ppid == pid and abnormal(f) and
                (not f.command or not program or _program(f.command) == program)]

    def worker_processes(self, pid: int, role: str) -> list[int]:
        found = []
        for child in self.children.get(pid, []):
            node = self.principal(child)
            if node is not None and self.waits[node].role == role:
                found.append(child)
        return found

    def job_of(self, pid: int) -> tuple[str, ...] | None:
        process = self.processes.get(pid)
        if process is None or "RANK" not in process.job:
            return None
        job = process.job
        return (job.get("MASTER_ADDR", ""), job.get("MASTER_PORT", ""),
                job.get("TORCHELASTIC_RUN_ID", ""))

    def ranks(self, pid: int) -> list[int]:
        """The processes of the same torch.distributed job as `pid` (itself included)."""
        job = self.job_of(pid)
        return [p for p in self.processes if job is not None and self.job_of(p) == job]

    def programs_threads(self, pid: int, exclude: Node) -> list[Node]:
        """Threads of `pid` that run the program's code and could act (not idle helpers)."""
        return [n for n in self.threads_of(pid) if n != exclude and
                not self.waits[n].helper and self.waits[n].kind != W.GONE and
                any(f.kind == "python" for f in self.threads[n].frames)]

    # -- edges -------------------------------------------------------------------------------
    def edges(self, node: Node) -> list[Edge]:
        wait = self.waits[node]
        pid = node[0]
        kind = wait.kind
        edges: list[Edge] = []
        if kind in (W.LOCK, W.MP_LOCK):
            edges = self._lock_edges(node, wait)
        elif kind in (W.NOTIFY, W.QUEUE, W.JOIN):
            scope = [pid]
            if kind == W.NOTIFY and wait.api is not None and "synchronize" in wait.api.file:
                scope = list(self.processes)  # a multiprocessing Event/Condition
            for other in scope:
                for target in self.programs_threads(other, node):
                    other_wait = self.waits[target]
                    if other_wait.kind == kind and wait.obj and other_wait.obj == wait.obj:
                        continue  # another consumer of the same object
                    edges.append(Edge(node, kind, target))
        elif kind == W.FUTURE:
            for target in self.threads_of(pid):
                if self.waits[target].role == "thread-worker" and not self.waits[target].helper:
                    edges.append(Edge(node, kind, target, why="runs a task"))
            for child in self.worker_processes(pid, "executor-worker"):
                worker = self.principal(child)
                if worker is not None and not self.waits[worker].helper:
                    edges.append(Edge(node, kind, worker, why="runs a task"))
            edges += [Edge(node, kind, fate=f) for f in self.dead_children(pid)]
        elif kind in (W.POOL, W.DATALOADER):
            role = "pool-worker" if kind == W.POOL else "dataloader-worker"
            edges += [Edge(node, kind, fate=f) for f in self.dead_children(pid)]
            for child in self.worker_processes(pid, role):
                worker = self.principal(child)
                if worker is not None and not self.waits[worker].helper:
                    edges.append(Edge(node, kind, worker, why="has not delivered"))
        elif kind == W.TFDATA:
            for target in self.threads_of(pid):
                if self.waits[target].role == "tf-pipeline" and target != node:
                    edges.append(Edge(node, kind, target, why="runs the pipeline's Python "
                                                            "code"))
            if not edges:
                busy = [t for t in self.threads_of(pid) if self.waits[t].kind == W.BUSY]
                edges = [Edge(node, kind, t, why="computes for the pipeline") for t in busy]
        elif kind == W.COLLECTIVE:
            edges = self._collective_edges(node, wait)
        elif kind == W.SUPERVISOR:
            for child in self.children.get(pid, []):
                worker = self.principal(child)
                if worker is not None and not self.waits[worker].helper:
                    edges.append(Edge(node, kind, worker, why="its worker"))
        elif kind == W.CHILD:
            edges = self._child_edges(node)
        elif kind in (W.CONNECTION, W.IO):
            edges = self._endpoint_edges(node)
        return edges

    def _lock_edges(self, node: Node, wait: W.Wait) -> list[Edge]:
        if wait.lock is None:
            return []
        scope = list(self.processes) if wait.kind == W.MP_LOCK else [node[0]]
        edges = []
        for pid in scope:
            for other in self.threads_of(pid):
                if other == node:
                    continue
                best: tuple[int, LockSite] | None = None
                for site in _held(self.threads[other]):
                    strength = same_lock(wait.lock.expression, site.expression)
                    if strength and (best is None or strength > best[0]):
                        best = (strength, site)
                if best is not None:
                    strength, site = best
                    edges.append(Edge(node, wait.kind, other, strength=strength,
                                      why=f"holds `{site.expression}` ({_site_text(site)})"))
        strongest = max((e.strength for e in edges), default=0)
        return [e for e in edges if e.strength == strongest]

    def _collective_edges(self, node: Node, wait: W.Wait) -> list[Edge]:
        mine = call_of(self, node)
        edges = []
        for pid in self.ranks(node[0]):
            if pid == node[0]:
                continue
            target = self.principal(pid)
            if target is None:
                continue
            theirs = call_of(self, target)
            if theirs is None or theirs != mine:
                edges.append(Edge(node, W.COLLECTIVE, target, why="is not in the same call"))
        parent = self.processes[node[0]].ppid
        edges += [Edge(node, W.COLLECTIVE, fate=f) for f in self.gone if f.ppid == parent]
        return edges

    def _child_edges(self, node: Node) -> list[Edge]:
        pid = node[0]
        thread = self.threads[node]
        wanted = thread.child
        children = self.children.get(pid, [])
        if wanted is not None and wanted > 0:
            children = [wanted] if wanted in self.processes else []
            if not children:
                fate = next((f for f in self.gone if f.pid == wanted), None)
                return [Edge(node, W.CHILD, fate=fate)] if fate is not None else []
        edges = []
        for child in children:
            target = self.principal(child)
            if target is not None:
                edges.append(Edge(node, W.CHILD, target, why="its child"))
        return edges

    def _endpoint_edges(self, node: Node) -> list[Edge]:
        thread = self.threads[node]
        endpoints = [e for e in [thread.waits_on, *thread.waits_on_more] if e is not None]
        edges = []
        seen: set[int] = set()
        for endpoint in endpoints:
            for pid, _fd in endpoint.peers:
                if pid == node[0] or pid in seen or pid not in self.processes:
                    continue
                seen.add(pid)
                target = self.principal(pid)
                if target is not None and not self.waits[target].helper:
                    edges.append(Edge(node, self.waits[node].kind, target,
                                      why=f"holds the other end of {endpoint.text}"))
        return edges


def _program(command: str) -> str:
    import os

    words = command.split()
    return os.path.basename(words[0]) if words else ""


def _site_text(site: LockSite) -> str:
    written = f"with {site.expression}:" if site.kind == "with" else \
        f"{site.expression}.acquire()"
    import os

    return f"{written} at {os.path.basename(site.file)}:{site.line}"


def _preference(tree: Tree, edge: Edge) -> tuple[int, int]:
    assert edge.target is not None
    wait = tree.waits[edge.target]
    if wait.helper:
        rank = 4
    elif wait.site is not None and wait.kind != W.BUSY:
        rank = 0
    elif wait.kind == W.BUSY:
        rank = 1
    else:
        rank = 2
    return rank, -edge.strength


def walk(tree: Tree, start: Node) -> Path:
    """From `start`, follow what each thread waits for until a thread that waits for nothing
    in the tree (the root), a process that is gone, or a cycle."""
    path = Path([start], [])
    node = start
    for _ in range(64):
        edges = tree.edges(node)
        dead = [e for e in edges if e.fate is not None]
        if dead:
            path.edges.append(dead[0])
            path.dead = dead[0].fate
            return path
        onward = sorted((e for e in edges if e.target is not None and e.target not in
                         path.nodes), key=lambda e: _preference(tree, e))
        if onward and _preference(tree, onward[0])[0] < 4:
            path.edges.append(onward[0])
            assert onward[0].target is not None
            node = onward[0].target
            path.nodes.append(node)
            continue
        back = [e for e in edges if e.target is not None and e.target in path.nodes]
        if back:
            assert back[0].target is not None
            path.cycle = path.nodes[path.nodes.index(back[0].target):]
            path.cycle_edge = back[0]
        return path
    return path


def start_node(tree: Tree) -> Node | None:
    """Where the program waits: the main process's principal thread."""
    node = tree.principal(tree.facts.main_pid)
    if node is not None:
        return node
    return next(iter(tree.waits), None)


def call_of(tree: Tree, node: Node) -> tuple[str, str] | None:
    """(collective, call site) a rank's thread waits in, or None when it is not in one."""
    wait = tree.wait(node)
    if wait.kind != W.COLLECTIVE or wait.api is None:
        return None
    return short(wait.api.function), where(wait.site)
