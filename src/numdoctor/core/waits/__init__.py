"""Who waits for whom in a process tree: the facts (model), and their collection from /proc.

    facts = collect(pids, main_pid=..., stacks=dumper.dump(...), run_dir=..., started=...)

`numdoctor.rules.hangs.analyse(facts)` turns them into a diagnosis.
"""

from typing import Any

from numdoctor.core.waits.model import (
    Endpoint,
    Fate,
    FrameContext,
    LockSite,
    ProcessFacts,
    ThreadFacts,
    TreeFacts,
)

__all__ = ["Endpoint", "Fate", "FrameContext", "LockSite", "ProcessFacts", "ThreadFacts",
           "TreeFacts", "collect", "merge_fates", "read_fates"]


def __getattr__(name: str) -> Any:
    # The collection (sockets, /proc parsers) loads when a hang is examined; the rules that
    # only need the model (every `numdoctor check` loads them) do not pay for it.
    if name == "collect":
        from numdoctor.core.waits.collect import collect

        return collect
    if name in ("merge_fates", "read_fates"):
        from numdoctor.core.waits import fates

        return getattr(fates, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
