"""The program ran past its --timeout (HANG003): whatever it was doing at the end."""

from __future__ import annotations

from numdoctor.core.facts import ProcView
from numdoctor.core.monitor import IDLE_CPU, IDLE_TREE_CPU
from numdoctor.core.stacks.model import ProcessStacks
from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Stage, declare
from numdoctor.rules.run._text import process_lines

HANG003 = declare(
    "HANG003", "The program ran past its --timeout", Severity.ERROR,
    """
    The hard `--timeout` (wall-clock seconds since the start) expired. numdoctor dumped every
    thread of every process, then killed the whole process tree and exited with status 124,
    like `timeout(1)`.

    The evidence says what the program was doing in the last seconds: still producing output,
    idle (then HANG001 usually explains more) or spinning.

    **Fix.** If the program was still making progress, it simply needs more time. Otherwise
    read the stacks: where the main thread was when time ran out.
    """,
    Stage.RUN,
)


def timeout_finding(*, timeout: float, elapsed: float, silent_for: float, window: float,
                    tree_cpu: float | None, views: list[ProcView],
                    stacks: dict[int, ProcessStacks],
                    interpreters: tuple[str, ...]) -> Finding:
    """HANG003, saying whether the tree was idle or busy at the end; the hang analysis that
    comes with it names the root."""
    busiest = max((v.cpu or 0.0 for v in views), default=0.0)
    idle = tree_cpu is not None and tree_cpu < IDLE_TREE_CPU and busiest < IDLE_CPU
    state = "idle" if idle else "busy"
    main = next((v for v in views if v.role == "main"), views[0] if views else None)
    return HANG003.finding(
        [f"--timeout {timeout:g} s reached after {elapsed:.1f} s",
         f"last output or heartbeat {silent_for:.1f} s before; the tree used "
         f"{(tree_cpu or 0):.0%} of one CPU over the last {window:g} s ({state})",
         *process_lines(views, stacks, window, interpreters)],
        title=f"The program ran past --timeout {timeout:g} s ({state} at the end)",
        where=f"pid {main.pid}" if main else "")
