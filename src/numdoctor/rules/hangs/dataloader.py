"""The torch DataLoader waiting for a worker stuck in the dataset's code."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import flow, phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

RULE = declare(
    "HANG006", "The DataLoader waits for a worker stuck in the dataset's code",
    Severity.ERROR,
    """
    The training loop waits for the next batch of a torch `DataLoader` with worker
    processes (`num_workers > 0`), and the worker that must deliver it is stuck inside the
    dataset's own code: `__getitem__` of a map-style dataset, `__iter__`/`__next__` of an
    iterable one, a `collate_fn` or a `worker_init_fn` — waiting for a lock, a network
    read, a file on a hung mount, a child process, or a thread pool that fork() left
    without threads.

    numdoctor finds the DataLoader workers (their stacks run
    `torch/utils/data/_utils/worker.py:_worker_loop`), numbered in the order they started as
    torch numbers them, sees which of them are idle (waiting for indices) and which one is
    inside the program's code, and names that line.

    **Why it matters.** With the default `timeout=0` the DataLoader waits forever: torch
    notices a worker that *died*, but not one that is stuck, and the main process's stack
    only shows `_try_get_data`.

    **Fix.** Fix the wait at the named line (a timeout on network reads, no locks shared
    with the main process across fork, `multiprocessing_context="spawn"` when the dataset
    uses threads or OpenMP). `DataLoader(timeout=60)` turns a stuck worker into a
    `RuntimeError: DataLoader timed out after 60 seconds`; `num_workers=0` runs the dataset
    in the main process, where a debugger or traceback shows the line directly.
    """,
    Stage.RUN,
)


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    index = flow.consumer_edge(path, frozenset({W.DATALOADER}))
    if index is None:
        return None
    consumer = path.nodes[index]
    if path.dead is not None and index == len(path.edges) - 1:
        return None  # a dead worker: pools.py
    worker = path.nodes[index + 1]
    root = path.root
    root_wait = tree.wait(root)
    place = phrases.basename_line(root_wait)
    function = root_wait.site.function.rsplit(".", 1)[-1] if root_wait.site else ""
    title = (f"The loop at {phrases.basename_line(tree.wait(consumer))} waits for "
             f"{phrases.who_process(tree, worker[0])}, stuck"
             + (f" in {function} at {place}" if place else "")
             + (f" ({_what(tree, root)})" if _what(tree, root) else ""))
    lines = phrases.path_lines(tree, path)
    idle = [p for p in tree.worker_processes(consumer[0], "dataloader-worker")
            if p != worker[0]]
    for pid in idle[:4]:
        node = tree.principal(pid)
        if node is not None:
            state = "idle, waiting for indices" if tree.wait(node).helper else \
                phrases.doing(tree, node)
            lines.append(f"{phrases.who_process(tree, pid)} is {state}"
                         if tree.wait(node).helper else
                         f"{phrases.who_process(tree, pid)} {state}")
    lines.append(phrases.stack_line(tree, root))
    lines.append("DataLoader(timeout=...) would have turned this wait into an error "
                 "(the default timeout=0 waits forever)")
    shown = set(path.nodes)
    for pid in idle:
        node = tree.principal(pid)
        if node is not None:
            shown.add(node)
    lines += bystanders(tree, shown)
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {worker[0]}",
        why="The DataLoader delivers batches in order: the batch this worker holds blocks "
            "the loop, and torch does not notice a worker that is stuck (only one that died).",
        fix="Fix the wait at the worker's line; DataLoader(timeout=60) raises instead of "
            "hanging; num_workers=0 runs the dataset in the main process for debugging.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _what(tree: Tree, node: tuple[int, int]) -> str:
    wait = tree.wait(node)
    if wait.context is not None and wait.context.text:
        return f"`{wait.context.text}`"
    return wait.detail
