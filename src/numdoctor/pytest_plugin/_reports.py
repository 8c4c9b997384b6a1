"""Test reports for what only the pytest process can see: a hang, a crash, a lost worker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pytest
from _pytest._code.code import TerminalRepr

from numdoctor.findings import Finding, sort_findings
from numdoctor.pytest_plugin._harness import is_harness

if TYPE_CHECKING:
    from numdoctor.pytest_plugin._workers import TestRun, Worker

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


class NumdoctorFailure(TerminalRepr):
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


# -- what a failure says -----------------------------------------------------------------------

def hang_text(run: TestRun, worker: Worker, message: str, shown_log: str) -> str:
    from numdoctor.supervise.report import format_stacks

    lines = [f"numdoctor: {message}", f"ran in: {worker.where()}", *killed_lines(run, worker)]
    if run.errors:
        lines += run.errors
    incident = run.incident
    if incident is not None:
        if incident.findings:
            lines += ["", *format_findings(sort_findings(incident.findings))]
        for stacks in incident.stacks.values():
            sources = ", ".join(stacks.sources) or "none"
            lines += ["", f"Stacks of pid {stacks.pid} ({sources}):", format_stacks(stacks)]
    assert worker.watch is not None
    notes = list(dict.fromkeys(worker.watch.notes))
    if notes:
        lines += ["", *(f"note: {note}" for note in notes)]
    if shown_log:
        lines += ["", "output of the worker:", tail(shown_log, 30)]
    return "\n".join(lines)


def crash_text(run: TestRun, worker: Worker, phase: str, shown_log: str) -> tuple[str, str]:
    ending = run.ending
    assert ending is not None
    summary = crash_summary(run)
    message = f"crashed during {phase}: {summary}"
    lines = [f"numdoctor: the test's process {summary} during {phase}",
             f"ran in: {worker.where()}", *killed_lines(run, worker)]
    if run.partial_message:
        lines.append("(it died while sending a report)")
    lines += run.errors
    if ending.findings:
        lines += ["", *format_findings(ending.findings)]
    main = ending.crash_dumps.get(worker.pid, "")
    if main:
        lines += ["", "faulthandler traceback of the crash:", _harnessless_text(main)]
    if shown_log:
        lines += ["", "output of the worker:", tail(shown_log, 30)]
    return "\n".join(lines), message


def crash_summary(run: TestRun) -> str:
    """'was killed by SIGSEGV (segmentation fault) in string_at (...) [pkg]'."""
    ending = run.ending
    assert ending is not None
    main_exit = ending.main_exit
    if main_exit.signal is None:
        return (f"exited with status {main_exit.code} without reporting a result (os._exit() "
                "or a C library calling exit() inside the test?)")
    crash = next((f for f in ending.findings if f.code.startswith(("SIG", "OOM"))), None)
    text = f"was {main_exit.describe()}"
    if crash is not None and " in " in crash.title:
        text += " in " + crash.title.split(" in ", 1)[1]
    return text


def _harnessless_text(text: str) -> str:
    out: list[str] = []
    dropped, indent = 0, ""
    for line in text.strip().splitlines():
        match = re.match(r'^(\s+)File "(?P<file>[^"]*)", line ', line)
        if match and is_harness(match["file"]):
            dropped += 1
            indent = match.group(1)
            continue
        if dropped:
            out.append(f"{indent}... {dropped} frame(s) of pytest omitted")
            dropped = 0
        out.append(line)
    if dropped:
        out.append(f"{indent}... {dropped} frame(s) of pytest omitted")
    return "\n".join(out)


def killed_lines(run: TestRun, worker: Worker) -> list[str]:
    killed = dict(sorted({pid: command for pid, command in [*run.killed, *run.leftovers]}
                         .items()))
    if not killed:
        return []
    return ["killed: " + ", ".join(
        f"{pid} (the test's worker)" if pid == worker.pid else f"{pid} ({command})"
        for pid, command in killed.items())]
