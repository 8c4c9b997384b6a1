"""tf.data: the training loop waits for an input pipeline whose Python code is stuck."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import flow, phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Stage, declare

RULE = declare(
    "HANG007", "The training loop waits for a tf.data pipeline whose Python code is stuck",
    Severity.ERROR,
    """
    Iterating a `tf.data.Dataset` waits for the next element, and the pipeline's Python code
    — the generator of `Dataset.from_generator`, a function wrapped in `tf.py_function` or
    `tf.numpy_function` inside `map` — is blocked at a line of the program: an empty
    `queue.Queue` nothing fills, a lock the training loop itself holds, a network read.

    TensorFlow runs that Python code on one of its own thread-pool threads
    (`from_generator_op.py:generator_py_func`, `script_ops.py`), so the main thread's stack
    shows only native frames such as `IteratorGetNextOp` and `PrefetchDatasetOp::
    GetNextInternal`, and TensorFlow's other threads may keep a CPU busy polling: the process
    looks like it spins while in fact it waits. numdoctor finds the pipeline thread by its
    frames and names the line.

    **Why it matters.** Nothing in TensorFlow times out here; the program waits forever.

    **Fix.** Fix the wait at the named line: a generator must not wait for something the
    training loop produces later (feed the queue before iterating, or put a sentinel when
    done), and a pipeline function must not take a lock the loop holds while iterating. Prefer
    tf.data's own sources (`from_tensor_slices`, `TFRecordDataset`) to Python generators.
    """,
    Stage.RUN,
)


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    index = flow.consumer_edge(path, frozenset({W.TFDATA}))
    if index is None:
        if tree.wait(path.root).kind == W.TFDATA:
            return _native_pipeline(tree, path)
        return None
    consumer = path.nodes[index]
    root = path.root
    root_wait = tree.wait(root)
    function = root_wait.site.function.rsplit(".", 1)[-1] if root_wait.site else ""
    kind = _kind(tree, path.nodes[index + 1])
    title = (f"The loop at {phrases.basename_line(tree.wait(consumer))} waits for the tf.data "
             f"pipeline; its {kind}" + (f" {function}" if function else "")
             + f" {phrases.doing(tree, root)}" + flow.closing(tree, path))
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    busy = [n for n in tree.threads_of(consumer[0]) if tree.wait(n).kind == W.BUSY]
    if busy:
        cpu = sum(tree.threads[n].cpu or 0 for n in busy)
        lines.append(f"{len(busy)} of TensorFlow's own threads use {cpu:.0%} CPU meanwhile: "
                     "they poll, the program waits")
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="tf.data can only produce the next element when the pipeline's Python code "
            "returns, and it is blocked.",
        fix="Fix the wait at the pipeline function's line (no waiting for data the loop "
            "produces later, no lock the loop holds while iterating).")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _kind(tree: Tree, node: tuple[int, int]) -> str:
    frames = tree.threads[node].frames
    if any("from_generator_op" in f.file for f in frames):
        return "generator"
    return "Python function"


def _native_pipeline(tree: Tree, path: Path) -> Verdict:
    """No Python code of the pipeline runs: the wait is in TensorFlow's own operations (a
    file or network read, a parallel map's native function)."""
    consumer = path.root
    busy = [n for n in tree.threads_of(consumer[0]) if tree.wait(n).kind == W.BUSY]
    title = (f"The loop at {phrases.basename_line(tree.wait(consumer))} waits for the tf.data "
             "pipeline, and no Python code of the pipeline is running: it waits in "
             "TensorFlow's own operations" + (
                 f" ({len(busy)} TensorFlow thread(s) busy)" if busy else ""))
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, consumer, 12))
    for node in busy[:3]:
        lines.append(phrases.stack_line(tree, node, 6))
    finding = RULE.finding(
        cap(lines), title=title, where=f"pid {consumer[0]}",
        why="The next element is not ready; the pipeline's native stages (reads, maps, "
            "interleaves) are waiting or working.",
        fix="Look at the pipeline's sources (files on a slow or hung mount, remote storage) "
            "and its parallel stages; iterate the dataset alone to time it.")
    return Verdict(finding, root_at(tree, consumer), proven=False,
                   summary=title[0].lower() + title[1:])
