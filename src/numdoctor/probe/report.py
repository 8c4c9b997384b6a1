"""Turn a ProbeResult into the same Report that every numdoctor command renders."""

from __future__ import annotations

from collections import Counter
from typing import Any

from numdoctor.findings import Finding, Report
from numdoctor.probe.engine import Failure, ProbeResult
from numdoctor.probe.runner import OUTCOMES, Result
from numdoctor.probe.scenarios import script
from numdoctor.rules import get

_VERB = {"hang": "hangs", "crash": "crashes", "error": "fails"}
_CODE = {"hang": "PRB001", "crash": "PRB002", "error": "PRB003"}

def build_report(result: ProbeResult) -> Report:
    findings: list[Finding] = []
    for module in result.missing:
        findings.append(get("PRB005").finding([f"{module}: not found on sys.path"],
                                              title=f"{module} is not installed"))
    diagnoses: dict[tuple[str, str], Finding] = {}
    for failure in result.failures:
        findings.append(_failure_finding(failure))
        for raw in failure.representative.findings:
            diagnosis = Finding.from_dict(raw)
            if diagnosis.code.startswith(("HANG", "SIG", "RUN")):
                continue  # restated by the PRB finding itself
            key = (diagnosis.code, diagnosis.title)
            if key not in diagnoses:
                diagnoses[key] = Finding(
                    diagnosis.code, diagnosis.severity, diagnosis.title, diagnosis.evidence,
                    diagnosis.why, diagnosis.fix,
                    where=f"probe: {failure.representative.scenario.label}")
    findings.extend(diagnoses.values())
    for slow in result.slow:
        base = result.baselines[slow.scenario.canary.name]
        findings.append(get("PRB004").finding(
            [f"scenario: {slow.scenario.label}", slow.detail,
             f"alone: {base.scenario.label}"],
            title=f"{slow.scenario.canary.name} is {slow.op_seconds / base.op_seconds:.1f}x "
                  f"slower after import {', '.join(slow.scenario.imports)}",
            fix="Limit thread pools (OMP_NUM_THREADS) and check `numdoctor check --import "
                f"{','.join(slow.scenario.all_imports())}` for conflicting runtimes.",
        ))
    return Report(kind="probe", findings=findings, outcome=_outcome(result))


def _failure_finding(failure: Failure) -> Finding:
    rep = failure.representative
    scenario = rep.scenario
    verb = _VERB[rep.outcome]
    mode = "" if scenario.mode == "inprocess" else f" ({_mode_words(scenario.mode)})"
    env = " ".join(f"{k}={v}" for k, v in scenario.env)
    title = (f"{scenario.canary.name} {verb} after import {', '.join(scenario.imports)}"
             f"{mode}" + (f" with {env}" if env else ""))
    evidence = [f"smallest failing scenario: {scenario.label}",
                f"what happened: {rep.detail}"]
    if len(failure.results) > 1:
        evidence.append(f"{len(failure.results)} scenarios of the matrix fail this way")
    verified = [m for m in failure.mitigations if m.verified]
    for mitigation in failure.mitigations:
        if mitigation.result is None:
            state = "not run (budget exhausted)"
        elif mitigation.verified:
            state = "passes (verified)"
        else:
            state = f"still {_VERB.get(mitigation.result.outcome, mitigation.result.outcome)}"
        evidence.append(f"{mitigation.description}: {state}")
    if verified:
        fix = "Verified mitigations: " + "; ".join(m.description for m in verified) + "."
    elif failure.mitigations:
        fix = ("No tried mitigation made it pass; attach the standalone script (in the "
               "report) to a bug report.")
    else:
        fix = ("No mitigation was tried (--no-minimize, or the budget ran out); run the probe "
               "again without it to minimise the failure and verify fixes.")
    return get(_CODE[rep.outcome]).finding(evidence, title=title, fix=fix,
                                           why=_why(rep))


def _why(result: Result) -> str:
    codes = sorted({f["code"] for f in result.findings
                    if not f["code"].startswith(("HANG", "SIG", "RUN"))})
    if codes:
        return "The supervisor's diagnosis: " + ", ".join(codes) + " (see those findings)."
    return ""


def _mode_words(mode: str) -> str:
    return {"fork": "op in the parent, then os.fork() and the op in the child",
            "mp-fork": "multiprocessing worker started with fork",
            "mp-spawn": "multiprocessing worker started with spawn",
            "mp-forkserver": "multiprocessing worker started with forkserver"}.get(mode, mode)


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
