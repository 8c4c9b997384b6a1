"""A pool waiting for the result of a task whose worker died."""

from __future__ import annotations

from numdoctor.core.waits.model import Fate
from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import cap, root_at
from numdoctor.rules.hangs.diagnosis import Root, Verdict
from numdoctor.rules.hangs.graph import Node, Path, Tree
from numdoctor.rules.registry import Stage, declare

RULE = declare(
    "HANG008", "A pool waits for the result of a worker that died", Severity.ERROR,
    """
    A `multiprocessing.Pool` call (`map`, `apply`, `starmap`, `imap`, `AsyncResult.get()`)
    waits for results while one of the pool's worker processes died with the task it was
    running: killed by a signal (the kernel's OOM killer, a scheduler, a crash in native
    code) or exiting with an error status. `Pool` replaces the dead worker but the task is
    lost, so the call waits forever (CPython issue bpo-22393, open since 2014). The live
    workers sit idle: there is nothing left for them to do.

    numdoctor learns how the worker ended from its parent: every Python process of a
    supervised program records the children it reaps, with their wait status and the time;
    the kernel log names OOM kills. The evidence gives the dead worker's pid, how and when it
    died, what the caller waits in, and that the remaining workers are idle.

    The same applies to a torch `DataLoader` worker that died (torch itself notices within a
    few seconds and raises "DataLoader worker (pid N) is killed by signal").

    **Why it matters.** Nothing will ever deliver the lost result; the program never ends.

    **Fix.** Use `concurrent.futures.ProcessPoolExecutor`, which raises `BrokenProcessPool`
    when a worker dies, or pass a `timeout` to `AsyncResult.get()`. Then find out why the
    worker died: an OOM kill (OOM001) needs less memory per worker or fewer workers; a
    signal from native code is a crash (SIG001-SIG005) to fix in that code.
    """,
    Stage.RUN,
)


def _idle_workers(tree: Tree, pid: int, role: str) -> tuple[list[int], list[int]]:
    idle, busy = [], []
    for child in tree.worker_processes(pid, role):
        node = tree.principal(child)
        if node is not None and tree.wait(node).helper:
            idle.append(child)
        else:
            busy.append(child)
    return idle, busy


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    consumers = [n for n in path.nodes if tree.wait(n).kind in (W.POOL, W.DATALOADER)]
    consumers += [n for n, w in tree.waits.items()
                  if w.kind in (W.POOL, W.DATALOADER) and n not in consumers]
    for node in consumers:
        dead = tree.dead_children(node[0])
        if dead:
            return _verdict(tree, path, node, dead)
    return None


def _verdict(tree: Tree, path: Path, node: Node, dead: list[Fate]) -> Verdict:
    wait = tree.wait(node)
    pid = node[0]
    dataloader = wait.kind == W.DATALOADER
    role = "dataloader-worker" if dataloader else "pool-worker"
    idle, busy = _idle_workers(tree, pid, role)
    fate = dead[0]
    what = "DataLoader" if dataloader else "multiprocessing.Pool"
    lines = [f"{phrases.who(tree, node)} {phrases.doing(tree, node)}",
             f"worker pid {fate.pid} (a child of {phrases.who_process(tree, pid)}) "
             f"{phrases.fate(fate)}"]
    lines += [f"worker pid {f.pid} {phrases.fate(f)}" for f in dead[1:3]]
    if idle:
        lines.append("the live workers are idle, waiting for tasks: "
                     + ", ".join(f"pid {p}" for p in idle))
    for child in busy[:3]:
        target = tree.principal(child)
        if target is not None:
            lines.append(f"{phrases.who(tree, target)} {phrases.doing(tree, target)}")
    lines.append(phrases.stack_line(tree, node, 6))
    # Certain: the caller waits without end, and every live worker is idle, so the lost
    # task's result can never come. torch's DataLoader notices dead workers by itself.
    untimed = tree.threads[node].timed is not True or wait.kind == W.POOL
    proven = not dataloader and not busy and untimed
    how = phrases.fate(fate).split(" (", 1)[0]
    title = (f"{what} waits for the result of worker pid {fate.pid}, which {how}"
             + (": the task is lost and the call never returns" if proven else ""))
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {pid}",
        why=(f"{what} never notices that a worker died with its task: the result it waits "
             "for will never come." if not dataloader else
             "The DataLoader waits for a batch from a worker that is gone."),
        fix=("Use concurrent.futures.ProcessPoolExecutor (it raises BrokenProcessPool when a "
             "worker dies) or AsyncResult.get(timeout=...); then find why the worker died "
             "(see OOM001/SIG findings)." if not dataloader else
             "Find why the worker died (OOM001/SIG findings); DataLoader(timeout=...) "
             "bounds the wait."))
    root = Root(pid=fate.pid, tid=None, role=f"worker pid {fate.pid}", where="",
                doing=how)
    caller = root_at(tree, node)
    root.where = caller.where
    return Verdict(finding, root, proven=proven,
                   summary=f"{what} waits for worker pid {fate.pid}, which {how}")
