"""Findings and reports: what the rules conclude, in a form every renderer understands.

A `Finding` is one conclusion with its evidence and fix. A `Report` bundles the findings with
the facts they came from (a snapshot as a plain dict) and, for `run`/`probe`, an outcome. Both
serialise to plain JSON-able dicts; renderers consume only those dicts.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class Severity(str, enum.Enum):
    """How bad a finding is. Ordered: error > warning > info."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Finding:
    """One conclusion drawn from facts.

    `evidence` holds the exact facts (paths, owning packages, numbers) as short lines, so a
    reader can verify the claim without re-running anything.
    """

    code: str
    severity: Severity
    title: str
    evidence: tuple[str, ...] = ()
    why: str = ""
    fix: str = ""
    # Where the finding was observed when it is not the whole process: a pid, a worker name,
    # a probe scenario. Empty for plain `check`.
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["evidence"] = list(self.evidence)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            code=data["code"],
            severity=Severity(data["severity"]),
            title=data["title"],
            evidence=tuple(data.get("evidence", ())),
            why=data.get("why", ""),
            fix=data.get("fix", ""),
            where=data.get("where", ""),
        )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first; among equals, the order the stage gave them. A stage puts its
    headline first (the root of a hang before the threads that wait for it, the crash before
    what it printed); `check`'s rules run in code order, so its reports stay stable."""
    return sorted(findings, key=lambda f: -f.severity.rank)


def merge_findings(first: list[Finding], more: list[Finding]) -> list[Finding]:
    """`first` plus `more`, each code once: a finding of `more` whose code is already there
    adds its new evidence lines to that finding instead."""
    from dataclasses import replace

    merged = list(first)
    for finding in more:
        same = next((i for i, f in enumerate(merged) if f.code == finding.code), None)
        if same is None:
            merged.append(finding)
            continue
        current = merged[same]
        extra = tuple(e for e in finding.evidence if e not in current.evidence)
        merged[same] = replace(current, evidence=current.evidence + extra)
    return merged


@dataclass
class Report:
    """Everything a renderer needs: a kind, findings, and the facts behind them.

    `kind` is "check", "run", "probe" or "fleet". `snapshot` is a `Snapshot.to_dict()` (or
    None), `outcome` a free-form dict owned by the command that produced the report (exit
    status, stacks, probe matrix...). Renderers show `sections` generically.
    """

    kind: str
    findings: list[Finding] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    tool_version: str = ""

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def fails(self, fail_on: str) -> bool:
        """True when a finding is at or above `fail_on` ("error", "warning" or "never")."""
        if fail_on == "never":
            return False
        threshold = Severity(fail_on)
        return any(f.severity.at_least(threshold) for f in self.findings)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)}
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        from numdoctor._version import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "numdoctor",
            "tool_version": self.tool_version or __version__,
            "kind": self.kind,
            "summary": self.counts(),
            "findings": [f.to_dict() for f in sort_findings(self.findings)],
            "snapshot": self.snapshot,
            "outcome": self.outcome,
        }

    # Rich display in Jupyter/IPython and a readable str() everywhere else.
    def _repr_html_(self) -> str:
        from numdoctor.render import render

        return render(self, "html")

    def _repr_markdown_(self) -> str:
        from numdoctor.render import render

        return render(self, "markdown")

    def __str__(self) -> str:
        from numdoctor.render import render

        return render(self, "text")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            kind=data["kind"],
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            snapshot=data.get("snapshot"),
            outcome=data.get("outcome"),
            tool_version=data.get("tool_version", ""),
        )
