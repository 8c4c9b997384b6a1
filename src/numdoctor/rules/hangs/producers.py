"""A consumer starved by its producer: queues, pipes, futures, pools, joins."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import flow, phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

RULE = declare(
    "HANG005", "A consumer waits for a producer that is stuck or absent", Severity.ERROR,
    """
    A thread waits for data or a signal that another thread or process should produce —
    `queue.Queue.get()`, `Event.wait()`, `Condition.wait()`, a `multiprocessing` Queue, Pipe
    or Connection, a `concurrent.futures` future, a `multiprocessing.Pool` result — and the
    producer is itself stuck: blocked at a line of the program, waiting for the consumer in
    turn, busy with something else, or absent (no thread or process could produce it).

    numdoctor follows the wait from the consumer to the producer: the pool thread or worker
    process running the task, the process holding the other end of the pipe (read from the
    kernel's file tables), the other threads of the process for a queue or an event. The
    headline names the producer and the line it is stuck at; the evidence shows the chain.

    **Why it matters.** The consumer's stack only says "waiting in queue.get()"; the line to
    fix is in the producer.

    **Fix.** Fix what blocks the producer at the named line. Give waits a timeout (`get(
    timeout=...)`, `future.result(timeout=...)`, `AsyncResult.get(timeout=...)`) so a stuck
    producer becomes an error, and send a sentinel or close the queue when a producer
    finishes or fails so that consumers stop waiting.
    """,
    Stage.RUN,
)


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    index = flow.consumer_edge(path, flow.DATA_FLOW)
    root = path.root
    root_wait = tree.wait(root)
    if index is None:
        if root_wait.kind not in flow.DATA_FLOW - {W.LOCK}:
            return None
        consumer = root
    else:
        consumer = path.nodes[index]
    title = f"{_cap(phrases.who(tree, consumer))} {flow.what(tree, consumer)}"
    if consumer == root:
        title += flow.closing(tree, path) or ": nothing produces what it waits for"
    else:
        title += f"; {phrases.who(tree, root)} {phrases.doing(tree, root)}"
        title += flow.closing(tree, path)
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    lines += bystanders(tree, set(path.nodes))
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="The consumer can only continue when the producer delivers, and the producer is "
            "stuck" + (" or absent." if consumer == root else "."),
        fix="Fix what blocks the producer at its line; give the consumer's wait a timeout so "
            "a stuck producer becomes an error.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
