"""The `Report` of a supervised run, and the few lines printed on stderr when it failed.

The report goes through the same renderers as `check` (text, Markdown, JSON) and therefore
through the same secret redaction; the command line, stderr and stacks are user data and are
redacted there like everything else.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from numdoctor.core.facts import ProcView
from numdoctor.core.stacks.model import ProcessStacks, ThreadStack
from numdoctor.core.status import Status
from numdoctor.findings import Finding, Report, Severity, sort_findings
from numdoctor.rules.run._text import mib

STDERR_LINES = 40

# One line per outcome, completed with details by `summary()`.
_STATUS_WORDS = {
    Status.OK: "exited normally",
    Status.EXIT: "exited with a non-zero status",
    Status.SIGNAL: "was ended by a signal",
    Status.CRASH: "crashed",
    Status.OOM: "was killed by the OOM killer",
    Status.HANG: "hung",
    Status.SPINNING: "was spinning without progress",
    Status.TIMEOUT: "ran past its --timeout",
    Status.DEADLOCK: "is deadlocked",
    Status.INTERRUPTED: "was interrupted",
}


@dataclass
class RunFacts:
    """Everything the supervisor gathered, handed over to the report in one piece."""

    command: list[str]
    status: str
    exit_code: int
    program_exit: str  # "exited with status 1", "killed by SIGSEGV (segmentation fault)"
    duration: float
    headline: str  # the one-line summary
    findings: list[Finding] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    views: list[ProcView] = field(default_factory=list)
    stacks: dict[int, ProcessStacks] = field(default_factory=dict)
    crash_dumps: dict[int, str] = field(default_factory=dict)  # pid -> raw faulthandler text
    wiring: dict[str, str] = field(default_factory=dict)
    stderr_tail: bytes = b""
    resources: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    diagnosis: dict[str, Any] | None = None  # the hang analysis: root, proven, summary


def build(facts: RunFacts) -> Report:
    stderr_text = facts.stderr_tail.decode("utf-8", "replace")
    stderr_lines = stderr_text.splitlines()[-STDERR_LINES:]
    outcome: dict[str, Any] = {
        "summary": facts.headline,
        "status": facts.status,
        "exit_code": facts.exit_code,
        "program_exit": facts.program_exit,
        "command": facts.command,
        "duration_s": round(facts.duration, 3),
        "processes": [v.to_dict() for v in facts.views],
        "stacks": [s.to_dict() for s in facts.stacks.values()],
        "crash_dumps": {str(k): v for k, v in facts.crash_dumps.items()},
        "output": facts.wiring,
        "stderr_tail": "\n".join(stderr_lines),
        "resources": facts.resources,
        "gpu": facts.gpu,
        "notes": facts.notes,
        "timings_s": {k: round(v, 3) for k, v in facts.timings.items()},
        "killed": facts.killed,
        "survivors": facts.survivors,
        "diagnosis": facts.diagnosis,
        "sections": _sections(facts, stderr_lines),
    }
    return Report(kind="run", findings=sort_findings(facts.findings), snapshot=facts.snapshot,
                  outcome=outcome)


def _sections(facts: RunFacts, stderr_lines: list[str]) -> list[dict[str, Any]]:
    sections: list[dict[str, Any]] = []
    run = [f"command: {shlex.join(facts.command)}",
           f"outcome: {facts.headline}",
           f"the program {facts.program_exit}; numdoctor exited with {facts.exit_code}",
           f"duration: {facts.duration:.1f} s"]
    run += [f"{name}: {how}" for name, how in facts.wiring.items()]
    if facts.killed:
        run.append(f"killed {len(facts.killed)} process(es) of the tree: "
                   + ", ".join(map(str, facts.killed)))
    if facts.survivors:
        run.append("could NOT kill: " + ", ".join(map(str, facts.survivors)))
    sections.append({"title": "Run", "text": "\n".join(run)})
    if facts.views:
        sections.append({
            "title": "Processes (CPU over the incident window)",
            "columns": ["pid", "parent", "role", "command", "CPU", "RSS", "peak RSS", "state"],
            "rows": [[str(v.pid), str(v.ppid), v.role, v.command,
                      "-" if v.cpu is None else f"{v.cpu:.0%}", mib(v.rss) if v.rss else "-",
                      mib(v.peak_rss) if v.peak_rss else "-", v.state] for v in facts.views],
        })
    for stacks in facts.stacks.values():
        sections.append({"title": f"Stacks of pid {stacks.pid} "
                                  f"({', '.join(stacks.sources) or 'none'})",
                         "text": format_stacks(stacks)})
    for pid, text in facts.crash_dumps.items():
        sections.append({"title": f"Crash of pid {pid} (faulthandler)", "text": text.strip()})
    resources = facts.resources
    if resources:
        lines = [f"peak resident memory of the tree: {mib(resources.get('peak_tree_rss'))}"]
        if resources.get("cgroup_limit"):
            lines.append(f"memory cgroup limit: {mib(resources['cgroup_limit'])}, peak "
                         f"{mib(resources.get('cgroup_peak'))}")
        lines.append(f"samples: {resources.get('samples')} "
                     f"(numdoctor spent {resources.get('sampling_s', 0):.3f} s on them)")
        sections.append({"title": "Resources", "text": "\n".join(lines)})
    if facts.gpu:
        gpu = facts.gpu
        text = gpu.get("note") or "\n".join(
            f"GPU {g['index']} ({g['name']}): {g['utilization']}% busy, "
            f"{mib(g['memory_used'])} of {mib(g['memory_total'])}" for g in gpu.get("gpus", []))
        sections.append({"title": "GPUs", "text": text})
    if stderr_lines:
        sections.append({"title": f"stderr (last {len(stderr_lines)} lines)",
                         "text": "\n".join(stderr_lines)})
    if facts.notes:
        sections.append({"title": "Notes", "text": "\n".join(f"- {n}" for n in facts.notes)})
    return sections


def format_stacks(stacks: ProcessStacks) -> str:
    lines = []
    for thread in stacks.threads:
        lines.append(_thread_header(thread))
        for frame in thread.frames:
            if frame.kind == "python":
                lines.append(f'    File "{frame.file}", line {frame.line or "?"}, in '
                             f"{frame.function}")
            else:
                name = frame.function or "??"
                library = os.path.basename(frame.file) if frame.file else "?"
                approx = " (stack scan)" if frame.approximate else ""
                owner = f"  [{frame.package}]" if frame.package else ""
                lines.append(f"    {name} in {library}{approx}{owner}")
        if not thread.frames:
            lines.append("    (no frames)")
    for note in stacks.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) or "(nothing)"


def _thread_header(thread: ThreadStack) -> str:
    parts = [f"Thread {thread.id}"]
    if thread.native_id is not None and str(thread.native_id) != thread.id:
        parts.append(f"(tid {thread.native_id})")
    if thread.name:
        parts.append(f'"{thread.name}"')
    if thread.state:
        parts.append(thread.state)
    if thread.current:
        parts.append("[current]")
    if thread.owns_gil:
        parts.append("[holds the GIL]")
    parts.append(f"<{thread.source}>")
    return " ".join(parts)


def summary(facts: RunFacts, report_path: str | None, limit: int = 3) -> list[str]:
    """The lines printed on stderr after a failed run: short, with the way to the rest."""
    lines = [f"numdoctor: {facts.headline}"]
    shown = [f for f in sort_findings(facts.findings) if f.severity != Severity.INFO][:limit]
    for index, finding in enumerate(shown):
        where = f" [{finding.where}]" if finding.where else ""
        lines.append(f"numdoctor: {finding.severity.value.upper()} {finding.code}{where}: "
                     f"{finding.title}")
        if index == 0:
            for evidence in _key_evidence(finding):
                lines.append(f"numdoctor:     {evidence}")
    if report_path:
        lines.append(f"numdoctor: full report with every thread's stack: {report_path}")
    if shown:
        lines.append(f"numdoctor: explanations: numdoctor explain {shown[0].code}")
    return lines


# The evidence of a hang that says when it was seen, not who waits for whom.
_HANG_PREAMBLE = ("no output", "idle for", "the whole tree")


def _key_evidence(finding: Finding) -> list[str]:
    if finding.code.startswith("HANG") or finding.code == "FORK001":
        # Who waits for whom, step by step, then the stack at the end of that path.
        path = [e for e in finding.evidence
                if not e.startswith((*_HANG_PREAMBLE, "stack"))][:4]
        stack = [e for e in finding.evidence if e.startswith("stack")][:1]
        return [e if len(e) <= 300 else e[:297] + "..." for e in path + stack]
    keys = ("stack", "faulting thread", "culprit", "busy thread", "kernel:", "stderr:",
            "the faulting instruction", "under a BLAS call")
    picked = [e for e in finding.evidence if e.startswith(keys)][:3]
    if not picked:
        picked = list(finding.evidence[1:3] if len(finding.evidence) > 1 else finding.evidence)
    return [e if len(e) <= 300 else e[:297] + "..." for e in picked]
