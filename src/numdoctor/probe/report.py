"""Turn a ProbeResult into the same Report that every numdoctor command renders."""

from __future__ import annotations

from collections import Counter
from typing import Any

from numdoctor.findings import Report
from numdoctor.probe.engine import ProbeResult
from numdoctor.probe.runner import OUTCOMES
from numdoctor.probe.scenarios import script
from numdoctor.rules.probe import probe_findings


def build_report(result: ProbeResult) -> Report:
    return Report(kind="probe", findings=probe_findings(result), outcome=_outcome(result))


def _outcome(result: ProbeResult) -> dict[str, Any]:
    counts = Counter(r.outcome for r in result.results)
    if result.not_run:
        counts["not-run"] += result.not_run
    parts = [f"{counts[o]} {o}" for o in OUTCOMES if counts.get(o)]
    total = len(result.results) + result.not_run
    summary = (f"{total} scenarios in {result.seconds:.1f} s: {', '.join(parts) or 'none'}"
               + (f"; {len(result.failures)} failure group(s) minimised and re-run with "
                  "mitigations" if result.failures else ""))
    rows = [[r.scenario.label, r.outcome, f"{r.seconds:.2f}",
             "" if r.op_seconds is None else f"{r.op_seconds:.3f}", r.detail[:120]]
            for r in sorted(result.results,
                            key=lambda r: (OUTCOMES.index(r.outcome), r.scenario.label))]
    sections: list[dict[str, Any]] = [{
        "title": "Scenario matrix",
        "columns": ["scenario", "outcome", "seconds", "op seconds", "detail"],
        "rows": rows,
    }]
    if result.baselines:
        sections.append({
            "title": "Each operation alone (reference for 'slow')",
            "columns": ["operation", "outcome", "op seconds"],
            "rows": [[name, r.outcome, "" if r.op_seconds is None else f"{r.op_seconds:.3f}"]
                     for name, r in result.baselines.items()],
        })
    if result.notes:
        sections.append({"title": "Notes", "text": "\n".join(result.notes)})
    for failure in result.failures:
        rep = failure.representative
        sections.append({"title": f"Reproduce: {rep.scenario.label}",
                         "text": script(rep.scenario)})
        for section in rep.sections:
            sections.append({**section, "title": f"{rep.scenario.label}: "
                                                 f"{section.get('title', '')}"})
    return {
        "summary": summary,
        "status": "fail" if result.failures else "pass",
        "sections": sections,
        "counts": dict(counts),
        "seconds": round(result.seconds, 3),
        "missing": result.missing,
        "notes": list(result.notes),
        "scenarios": [
            {"imports": list(r.scenario.imports), "operation": r.scenario.canary.name,
             "mode": r.scenario.mode, "env": r.scenario.env_dict, "outcome": r.outcome,
             "seconds": round(r.seconds, 3), "op_seconds": r.op_seconds, "detail": r.detail}
            for r in result.results
        ],
        "failures": [
            {"minimal": f.representative.scenario.label, "outcome": f.representative.outcome,
             "scenarios": len(f.results), "script": script(f.representative.scenario),
             "mitigations": [{"description": m.description, "verified": m.verified,
                              "outcome": m.result.outcome if m.result else "not-run"}
                             for m in f.mitigations]}
            for f in result.failures
        ],
    }
