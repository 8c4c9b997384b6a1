"""What the hang analysis concludes: findings with the root first, and whether it is proven."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from numdoctor.findings import Finding


@dataclass
class Root:
    """The thread (or process) the rest of the tree waits on."""

    pid: int
    tid: int | None = None  # None: the process as a whole (dead, or no thread known)
    role: str = ""  # "DataLoader worker 1 (pid 123)", "rank 1 (pid 77)", "main (pid 9)"
    where: str = ""  # "dataset.py:14" (the root's own line), "" when unknown
    doing: str = ""  # "blocked in Event.wait()", "sleeping", "dead (killed by SIGKILL)"

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "tid": self.tid, "role": self.role, "where": self.where,
                "doing": self.doing}


@dataclass
class HangDiagnosis:
    """The analysis of a stuck tree. `findings[0]` is the headline; `proven` says the program
    can never continue (a lock cycle, a forked child waiting for OpenMP threads it lacks, a
    pool waiting on a dead worker's task, ranks in different collectives or a needed rank
    gone) — a program that merely waits is never proven."""

    findings: list[Finding] = field(default_factory=list)
    proven: bool = False
    root: Root | None = None
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"proven": self.proven, "summary": self.summary,
                "root": self.root.to_dict() if self.root else None,
                "findings": [f.to_dict() for f in self.findings]}


@dataclass
class Verdict:
    """One class's conclusion: its finding, whether it is proven, and the root it names."""

    finding: Finding
    root: Root
    proven: bool = False
    summary: str = ""
