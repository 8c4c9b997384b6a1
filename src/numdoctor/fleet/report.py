"""Turn a cluster's facts into one Report: grouped findings, the diff, a table of members.

Findings that are identical on several members become one finding whose `where` lists them
("all 8 workers", "workers tcp://a, tcp://b", "client"). Durations in evidence lines are
ignored when deciding what is identical, since they differ on every run.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

from numdoctor.findings import Finding, Report, sort_findings
from numdoctor.fleet import runner
from numdoctor.fleet.collect import CLIENT, SCHEDULER, FleetFacts, MemberFacts
from numdoctor.fleet.diff import (
    CATEGORY_ORDER,
    Difference,
    compare,
)
from numdoctor.rules import apply_rules
from numdoctor.rules.fleet import (
    FLT006,
    addresses,
    difference_findings,
    failure_finding,
    oversubscription_findings,
    where,
)

_DURATION = re.compile(r"\d+(\.\d+)? s\b")
_MAX_EVIDENCE = 25
_LIST_INLINE = 6  # more workers than this are summarised in `where`


def build_report(facts: FleetFacts) -> Report:
    member_findings = {m.label: _member_findings(m, facts) for m in facts.members}
    grouped = group_findings(member_findings, facts)
    differences = compare(facts.members)
    findings = [*grouped, *difference_findings(differences, facts),
                *oversubscription_findings(facts)]
    if not facts.workers:
        findings.append(FLT006.finding(
            [f"scheduler {facts.scheduler_address} lists 0 workers"],
            where=f"scheduler {facts.scheduler_address}"))
    client = facts.member(CLIENT)
    outcome = _outcome(facts, member_findings, sort_findings(grouped), differences)
    return Report(kind="fleet", findings=findings,
                  snapshot=client.snapshot.to_dict() if client and client.ok and
                  client.snapshot is not None else None,
                  outcome=outcome)


# -- findings ---------------------------------------------------------------------------------

def _member_findings(member: MemberFacts, facts: FleetFacts) -> list[Finding]:
    if member.ok:
        assert member.snapshot is not None
        return apply_rules(member.snapshot)
    return [failure_finding(member, facts)]


def group_findings(per_member: dict[str, list[Finding]], facts: FleetFacts) -> list[Finding]:
    """One finding per distinct finding, its `where` naming every member that has it (after
    the place within the member it already names, if any: "worker tcp://a; probe: ...")."""
    holders: dict[tuple, list[str]] = defaultdict(list)
    first: dict[tuple, Finding] = {}
    for label, findings in per_member.items():
        for finding in findings:
            key = (finding.code, finding.severity, finding.title, finding.why, finding.fix,
                   finding.where, tuple(_DURATION.sub("N s", line) for line in finding.evidence))
            if label not in holders[key]:
                holders[key].append(label)
            first.setdefault(key, finding)
    return [replace(first[key], where="; ".join(filter(None, (where(labels, facts),
                                                               first[key].where))))
            for key, labels in holders.items()]


def _outcome(facts: FleetFacts, member_findings: dict[str, list[Finding]],
             grouped: list[Finding], differences: list[Difference]) -> dict[str, Any]:
    workers = facts.workers
    return {
        "summary": _summary(facts, differences),
        "sections": [
            _members_section(facts, member_findings),
            _findings_section(grouped),
            _diff_section(facts, differences),
        ],
        "scheduler_address": facts.scheduler_address,
        "imports": facts.imports,
        "timeout": facts.timeout,
        "seconds": facts.seconds,
        "workers": {m.address: _member_dict(m, member_findings) for m in workers},
        "scheduler": _member_dict(facts.member(SCHEDULER), member_findings),
        "client": _member_dict(facts.member(CLIENT), member_findings),
        "diff": [d.to_dict() for d in differences],
    }


def _member_dict(member: MemberFacts | None,
                 member_findings: dict[str, list[Finding]]) -> dict[str, Any] | None:
    if member is None:
        return None
    data = member.to_dict()
    data["findings"] = [f.code for f in sort_findings(member_findings.get(member.label, []))]
    return data


def _summary(facts: FleetFacts, differences: list[Difference]) -> str:
    workers = facts.workers
    statuses = [m.status for m in workers]
    parts = [f"{len(workers)} worker{'s' if len(workers) != 1 else ''} of scheduler "
             f"{facts.scheduler_address}: {statuses.count(runner.OK)} answered"]
    for status, word in ((runner.HANG, "hung"), (runner.LOST, "lost"),
                         (runner.ERROR, "failed")):
        if statuses.count(status):
            parts.append(f"{statuses.count(status)} {word}")
    deviating = {m for d in differences if not d.outsiders and d.majority is not None
                 for _, members in d.deviations for m in members}
    undecided = sum(1 for d in differences if d.majority is None)
    summary = ", ".join(parts)
    if deviating:
        summary += f"; {len(deviating)} differ from the majority"
    if undecided:
        summary += f"; no majority on {undecided} setting{'s' if undecided != 1 else ''}"
    return (f"{summary} ({facts.seconds:.1f} s). System facts below are the client's; every "
            "member's are in --format json.")


def _members_section(facts: FleetFacts,
                     member_findings: dict[str, list[Finding]]) -> dict[str, Any]:
    rows = []
    for member in facts.members:
        codes = sorted({f.code for f in member_findings.get(member.label, [])})
        rows.append([
            member.label, member.name or "-", member.machine or "-", member.status,
            member.python or "-", member.numdoctor_version or "-", f"{member.seconds:.2f}",
            " ".join(codes) or "-",
        ])
    return {"title": "Cluster members",
            "columns": ["member", "name", "host", "status", "Python", "numdoctor", "seconds",
                        "findings"],
            "rows": rows}


def _findings_section(grouped: list[Finding]) -> dict[str, Any]:
    if not grouped:
        return {"title": "Findings on the members", "text": "No finding on any member."}
    return {"title": "Findings on the members (identical findings grouped)",
            "columns": ["severity", "code", "title", "where"],
            "rows": [[f.severity.value, f.code, f.title, f.where] for f in grouped]}


def _diff_section(facts: FleetFacts, differences: list[Difference]) -> dict[str, Any]:
    title = "Heterogeneity: where members differ from the majority of workers"
    answered = [m for m in facts.workers if m.ok]
    if not differences:
        if len(answered) < 2:
            text = (f"{len(answered)} worker(s) answered: nothing to compare between "
                    "workers.")
        else:
            text = (f"All {len(answered)} workers that answered agree on "
                    + ", ".join(CATEGORY_ORDER) + ".")
        return {"title": title, "text": text}
    rows = []
    for d in differences:
        majority = (f"{d.majority} ({len(d.majority_members)}/{d.compared})"
                    if d.majority is not None and not d.outsiders
                    else d.majority if d.majority is not None else "(no majority)")
        for value, members in d.deviations:
            rows.append([d.category, d.key, majority, d.describe(value),
                         addresses(members)])
    return {"title": title, "columns": ["category", "setting", "majority", "differs",
                                        "where"], "rows": rows}


