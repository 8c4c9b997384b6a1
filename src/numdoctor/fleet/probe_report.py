"""The report of a probe spread over a cluster: one matrix with a worker column, findings
grouped across workers.

Each worker's results become the findings `numdoctor probe` would report on that host
(`numdoctor.probe.build_report`); identical ones are grouped as `numdoctor fleet` groups
snapshot findings, so a failure seen on several workers is one finding whose `where` names
them. Workers that hung, died or failed during the probe get FLT002/FLT003/FLT004.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from numdoctor.findings import Finding, Report
from numdoctor.fleet import runner
from numdoctor.fleet.collect import WORKER, FleetFacts, MemberFacts
from numdoctor.fleet.probe_model import CHECK, FleetProbe, Share
from numdoctor.fleet.report import group_findings
from numdoctor.probe import ProbeResult
from numdoctor.probe import build_report as probe_findings_report
from numdoctor.probe.runner import OUTCOMES
from numdoctor.probe.scenarios import script
from numdoctor.redact import redact_text
from numdoctor.rules.fleet import FLT006, probe_worker_failure

_FAILED = ("PRB001", "PRB002", "PRB003")


def build_report(result: FleetProbe, base: Report | None = None) -> Report:
    """The probe's report; merged into `base` (a `numdoctor.fleet.check` report) if given."""
    findings = probe_findings(result)
    if not result.shares and base is None:
        findings.append(FLT006.finding(
            [f"scheduler {result.scheduler_address} lists 0 workers"],
            where=f"scheduler {result.scheduler_address}"))
    outcome = probe_outcome(result)
    sections = outcome.pop("sections")
    summary = outcome["summary"]
    if base is None:
        return Report(kind="fleet", findings=findings, outcome={
            "summary": f"Probe: {summary}", "sections": sections,
            "scheduler_address": result.scheduler_address, "probe": outcome})
    merged = dict(base.outcome or {})
    merged["summary"] = f"{merged.get('summary', '')} Probe: {summary}".strip()
    merged["sections"] = [*merged.get("sections", []), *sections]
    merged["probe"] = outcome
    return Report(kind="fleet", findings=[*base.findings, *findings], snapshot=base.snapshot,
                  outcome=merged, tool_version=base.tool_version)


# -- findings ---------------------------------------------------------------------------------

def probe_findings(result: FleetProbe) -> list[Finding]:
    per_worker = {share.label: _share_findings(share) for share in result.shares
                  if share.result is not None}
    findings = group_findings(per_worker, _facts(result))
    findings += [probe_worker_failure(share, result) for share in result.shares
                 if share.status != runner.OK and share.stage != CHECK]
    return findings


def _share_findings(share: Share) -> list[Finding]:
    """What `numdoctor probe` would report on this worker's host; failures whose follow-up
    did not happen say so."""
    result = share.result
    assert result is not None
    findings = list(probe_findings_report(replace(result, failures=[])).findings)
    seen: set[tuple[str, str]] = set()
    for failure in result.failures:
        reason = share.untried.get(failure.representative.scenario.label)
        alone = ProbeResult(result.options, baselines=result.baselines, failures=[failure])
        for finding in probe_findings_report(alone).findings:
            if finding.code in _FAILED and reason is not None:
                finding = replace(
                    finding,
                    evidence=(*finding.evidence,
                              f"not minimised and no mitigation tried: {reason}"),
                    fix="Run `numdoctor probe` with the same options on that worker's host "
                        "to minimise it and try the mitigations; the standalone script in "
                        "the report reproduces it.")
            elif finding.code not in _FAILED:
                # The supervisor's diagnoses: once per worker, as `numdoctor probe` does.
                if (finding.code, finding.title) in seen:
                    continue
                seen.add((finding.code, finding.title))
            findings.append(finding)
    return findings


def _facts(result: FleetProbe) -> FleetFacts:
    """The workers as `report.where` needs them ("all 4 workers", "worker tcp://...")."""
    members = [MemberFacts(role=WORKER, address=s.address, name=s.name, host=s.host)
               for s in result.shares]
    return FleetFacts(scheduler_address=result.scheduler_address, members=members,
                      imports=None, timeout=result.timeout)


# -- outcome ----------------------------------------------------------------------------------

def probe_outcome(result: FleetProbe) -> dict[str, Any]:
    counts = Counter(p.result.outcome for p in result.placements)
    if result.not_run:
        counts["not-run"] += len(result.not_run)
    return {
        "summary": _summary(result, counts),
        "sections": _sections(result),
        "options": _options(result),
        "modules": result.modules,
        "missing": result.missing,
        "counts": dict(counts),
        "seconds": result.seconds,
        "workers": {s.address: _share_dict(s, result) for s in result.shares},
        "scenarios": [_scenario_dict(p.result.scenario) | {
            "worker": p.worker, "outcome": p.result.outcome,
            "seconds": round(p.result.seconds, 3), "op_seconds": p.result.op_seconds,
            "detail": p.result.detail, "reassigned_from": p.moved_from}
            for p in result.placements],
        "not_run": [_scenario_dict(n.scenario) | {"reason": n.reason}
                    for n in result.not_run],
        "failures": [
            {"worker": share.address, "minimal": f.representative.scenario.label,
             "outcome": f.representative.outcome, "scenarios": len(f.results),
             "script": script(f.representative.scenario),
             "followed_up": f.representative.scenario.label not in share.untried,
             "mitigations": [{"description": m.description, "verified": m.verified,
                              "outcome": m.result.outcome if m.result else "not-run"}
                             for m in f.mitigations]}
            for share in result.shares if share.result for f in share.result.failures
        ],
    }


def _summary(result: FleetProbe, counts: Counter) -> str:
    used = sorted({p.worker for p in result.placements})
    parts = [f"{counts[o]} {o}" for o in OUTCOMES if counts.get(o)]
    total = len(result.placements) + len(result.not_run)
    text = (f"{total} scenarios on {len(used)} of {len(result.shares)} workers in "
            f"{result.seconds:.1f} s: {', '.join(parts) or 'none'}")
    failures = sum(len(s.result.failures) for s in result.shares if s.result)
    if failures:
        text += f"; {failures} failure group(s) followed up on their workers"
    troubled = [s for s in result.shares if s.status != runner.OK and s.stage != CHECK]
    if troubled:
        words = Counter(_STATUS_WORDS.get(s.status, s.status) for s in troubled)
        text += "; workers " + ", ".join(f"{n} {w}" for w, n in words.items()) + \
                " during the probe"
    return text + "."


_STATUS_WORDS = {runner.HANG: "hung", runner.LOST: "lost", runner.ERROR: "failed"}


def _options(result: FleetProbe) -> dict[str, Any]:
    options = result.options
    return {"modules": list(options.modules), "ops": options.ops, "orders": options.orders,
            "fork": options.fork, "modes": list(options.modes) if options.modes else None,
            "envs": [dict(e) for e in options.envs], "timeout": options.timeout,
            "hang_timeout": options.hang_timeout, "budget": options.budget,
            "minimize": options.minimize, "worker_timeout": result.timeout}


def _scenario_dict(scenario) -> dict[str, Any]:
    return {"imports": list(scenario.imports), "operation": scenario.canary.name,
            "mode": scenario.mode, "env": scenario.env_dict}


def _share_dict(share: Share, result: FleetProbe) -> dict[str, Any]:
    baselines = share.result.baselines if share.result else {}
    return {
        "name": share.name, "host": share.host, "hostname": share.hostname, "pid": share.pid,
        "python": share.python, "jobs": share.jobs, "status": share.status,
        "stage": share.stage, "error": share.error,
        "detail": share.detail, "present": share.present,
        "missing": share.result.missing if share.result else [],
        "environment": dict(share.environment),
        "scenarios": sum(1 for p in result.placements if p.worker == share.address),
        "in_hand": share.in_hand,
        "baselines": {name: {"outcome": r.outcome, "seconds": round(r.seconds, 3),
                             "op_seconds": r.op_seconds, "detail": r.detail}
                      for name, r in baselines.items()},
    }


def _sections(result: FleetProbe) -> list[dict[str, Any]]:
    sections = [_workers_section(result), _matrix_section(result)]
    baselines = [[name, share.address, r.outcome,
                  "" if r.op_seconds is None else f"{r.op_seconds:.3f}"]
                 for share in result.shares if share.result
                 for name, r in share.result.baselines.items()]
    if baselines:
        sections.append({"title": "Probe: each operation alone, per worker (reference for "
                                  "'slow' on that worker)",
                         "columns": ["operation", "worker", "outcome", "op seconds"],
                         "rows": baselines})
    if result.not_run:
        sections.append({"title": "Probe: scenarios not run",
                         "columns": ["scenario", "reason"],
                         "rows": [[n.scenario.label, n.reason] for n in result.not_run]})
    sections += _reproduce_sections(result)
    return sections


def _workers_section(result: FleetProbe) -> dict[str, Any]:
    rows = []
    for share in result.shares:
        status = share.status if share.status == runner.OK else \
            f"{share.status} ({share.stage})"
        env = " ".join(f"{k}={v}" for k, v in share.environment.items())
        missing = share.result.missing if share.result else []
        failures = len(share.result.failures) if share.result else 0
        rows.append([share.address, share.name or "-", share.machine or "-", str(share.jobs),
                     status, str(sum(1 for p in result.placements
                                     if p.worker == share.address)),
                     str(failures), env or "-", ", ".join(missing) or "-"])
    return {"title": "Probe: workers (scenarios inherit each worker's environment)",
            "columns": ["worker", "name", "host", "jobs", "status", "scenarios",
                        "failure groups", "inherited thread settings", "missing modules"],
            "rows": rows}


def _matrix_section(result: FleetProbe) -> dict[str, Any]:
    rows = []
    for p in sorted(result.placements, key=lambda p: (OUTCOMES.index(p.result.outcome),
                                                      p.result.scenario.label, p.worker)):
        r = p.result
        detail = redact_text(r.detail)[:120]  # before the cut: half a token has no shape
        if p.moved_from:
            detail = f"(re-assigned from {', '.join(p.moved_from)}) {detail}".strip()
        rows.append([r.scenario.label, p.worker, r.outcome, f"{r.seconds:.2f}",
                     "" if r.op_seconds is None else f"{r.op_seconds:.3f}", detail])
    return {"title": "Probe: scenario matrix",
            "columns": ["scenario", "worker", "outcome", "seconds", "op seconds", "detail"],
            "rows": rows}


def _reproduce_sections(result: FleetProbe) -> list[dict[str, Any]]:
    """One standalone script per distinct smallest failing scenario, with the supervisor's
    sections (stacks...) from the first worker it failed on."""
    where: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for share in result.shares:
        for failure in share.result.failures if share.result else []:
            rep = failure.representative
            label = rep.scenario.label
            where.setdefault(label, []).append(share.address)
            first.setdefault(label, (share, rep))
    sections = []
    for label, workers in where.items():
        share, rep = first[label]
        sections.append({"title": f"Reproduce: {label} (failed on {', '.join(workers)})",
                         "text": script(rep.scenario)})
        for section in rep.sections:
            sections.append({**section, "title": f"{label} on worker {share.address}: "
                                                 f"{section.get('title', '')}"})
    return sections
