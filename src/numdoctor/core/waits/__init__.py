"""Who waits for whom in a process tree: the facts (model), and their collection from /proc.

    facts = collect(pids, main_pid=..., stacks=dumper.dump(...), run_dir=..., started=...)

`numdoctor.rules.hangs.analyse(facts)` turns them into a diagnosis.
"""

from numdoctor.core.waits.collect import ThreadCpu, collect
from numdoctor.core.waits.fates import merge_fates, read_fates
from numdoctor.core.waits.model import (
    Endpoint,
    Fate,
    FrameContext,
    LockSite,
    ProcessFacts,
    ThreadFacts,
    TreeFacts,
)

__all__ = ["Endpoint", "Fate", "FrameContext", "LockSite", "ProcessFacts", "ThreadCpu",
           "ThreadFacts", "TreeFacts", "collect", "merge_fates", "read_fates"]
