"""Test reports for what only the pytest process can see: a hang, a crash, a lost child."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from numdoctor.findings import Finding

Phase = Literal["setup", "call", "teardown"]


@dataclass(frozen=True)
class CrashLine:
    """What `-ra`, `--tb=line` and junit's message attribute show (pytest's `reprcrash`)."""

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"

    def toterminal(self, tw) -> None:
        tw.line(str(self))


class NumdoctorFailure:
    """A failure numdoctor observed from outside the test: plain text, first line in red."""

    def __init__(self, text: str, crash: CrashLine) -> None:
        self.text = text
        self.reprcrash = crash

    def toterminal(self, tw) -> None:
        for index, line in enumerate(self.text.splitlines()):
            tw.line(line, red=index == 0, bold=index == 0)

    def __str__(self) -> str:
        return self.text


def failed_report(item: pytest.Item, when: Phase, text: str, message: str, *,
                  sections: list[tuple[str, str]], start: float, stop: float,
                  user_properties: list[tuple[str, object]]) -> pytest.TestReport:
    """The report of a test numdoctor saw fail from outside; its text, message and captured
    output are masked here, the one place they all pass (docs/redaction.md)."""
    from numdoctor.redact import redact_text

    path, lineno, _ = item.location
    crash = CrashLine(path, (lineno or 0) + 1, redact_text(message))
    sections = [(title, redact_text(content)) for title, content in sections]
    return pytest.TestReport(
        item.nodeid, item.location, {name: 1 for name in item.keywords}, "failed",
        NumdoctorFailure(redact_text(text), crash), when, sections=sections,
        duration=stop - start, start=start, stop=stop, user_properties=user_properties)


def passed_report(item: pytest.Item, when: Phase, *, start: float,
                  user_properties: list[tuple[str, object]]) -> pytest.TestReport:
    """Closes a test whose phase failed outside it: pytest (junitxml, -rA) expects a teardown."""
    return pytest.TestReport(
        item.nodeid, item.location, {name: 1 for name in item.keywords}, "passed", None, when,
        duration=0.0, start=start, stop=start, user_properties=user_properties)


def format_findings(findings: list[Finding], evidence_lines: int = 6) -> list[str]:
    """Findings as indented text, in the order given (the crash before what explains it)."""
    lines = []
    for finding in findings:
        where = f" [{finding.where}]" if finding.where else ""
        lines.append(f"{finding.severity.value.upper()} {finding.code}{where}: {finding.title}")
        lines.extend(f"    {line}" for line in finding.evidence[:evidence_lines])
        if len(finding.evidence) > evidence_lines:
            lines.append(f"    ... {len(finding.evidence) - evidence_lines} more")
        if finding.fix:
            lines.append(f"    fix: {finding.fix}")
        lines.append(f"    what it means: numdoctor explain {finding.code}")
    return lines


def tail(text: str, lines: int) -> str:
    kept = text.rstrip().splitlines()
    if len(kept) <= lines:
        return "\n".join(kept)
    return "\n".join([f"... ({len(kept) - lines} earlier lines)", *kept[-lines:]])
