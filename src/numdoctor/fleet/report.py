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

from numdoctor.findings import Finding, Report, Severity, sort_findings
from numdoctor.fleet import runner
from numdoctor.fleet.collect import CLIENT, SCHEDULER, WORKER, FleetFacts, MemberFacts
from numdoctor.fleet.diff import (
    CATEGORY_ORDER,
    CPU,
    CPUS,
    ENVIRONMENT,
    LIBRARIES,
    PACKAGES,
    PYTHON,
    THREADS,
    Difference,
    compare,
)
from numdoctor.rules import apply_rules, get
from numdoctor.rules._evidence import VENDOR_NAMES
from numdoctor.snapshot.environment import THREAD_LIMIT_VARS

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
        findings.append(get("FLT006").finding(
            [f"scheduler {facts.scheduler_address} lists 0 workers"],
            where=f"scheduler {facts.scheduler_address}"))
    client = facts.member(CLIENT)
    outcome = _outcome(facts, member_findings, sort_findings(grouped), differences)
    return Report(kind="fleet", findings=findings,
                  snapshot=client.snapshot.to_dict() if client and client.ok else None,
                  outcome=outcome)


# -- findings ---------------------------------------------------------------------------------

def _member_findings(member: MemberFacts, facts: FleetFacts) -> list[Finding]:
    if member.ok:
        assert member.snapshot is not None
        return apply_rules(member.snapshot)
    return [_failure_finding(member, facts)]


def _failure_finding(member: MemberFacts, facts: FleetFacts) -> Finding:
    evidence = [member.error] if member.error else []
    if member.machine:
        evidence.append(f"host {member.machine}" + (f", pid {member.pid}" if member.pid else ""))
    if member.status == runner.HANG:
        if member.detail:
            title = f"Collecting did not finish within {facts.timeout:g} s"
            evidence.append("stack of the collecting thread when the time ran out:\n"
                            + member.detail.rstrip())
            why = ("The member's event loop answered, but the call that gathers its facts "
                   "blocked; that thread is still blocked there.")
        else:
            title = f"No answer within {facts.timeout:g} s: the member is frozen or unreachable"
            why = ("Not even the member's event loop answered: the process is frozen (often C "
                   "code holding the GIL) or the network to it is down. Tasks sent to it "
                   "will wait until Dask removes it (worker-ttl, 5 minutes by default).")
        return get("FLT002").finding(
            evidence, title=title, why=why,
            fix="Dump its stacks on its host (py-spy dump --native --pid PID), restart it "
                "(client.restart_workers([...])) and run `numdoctor check` there.")
    if member.status == runner.LOST:
        return get("FLT003").finding(
            evidence, title="The connection broke while collecting: the worker died or left",
            why="A worker that dies while answering a diagnostic call is not safe to run "
                "tasks on either.",
            fix="Read the worker's and its nanny's logs (exit status, signal) and the host's "
                "kernel log (dmesg | grep -i oom); run `numdoctor check` on that host.")
    if member.detail:
        evidence.append(member.detail.rstrip())
    # Unpickling the collector fails before it runs; Dask may wrap the error in an Exception.
    missing = "ModuleNotFoundError" in member.error and "'numdoctor" in member.error
    from numdoctor._version import __version__

    return get("FLT004").finding(
        evidence,
        title="numdoctor is not installed there" if missing else "Collecting raised an error",
        why="Without its facts this member is missing from the comparison.",
        fix=f"pip install numdoctor=={__version__} in that environment (the same version as "
            "here)" if missing or "snapshot cannot be read" in member.error else
            "Report this with the JSON report if it looks like a numdoctor bug.")


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


def where(labels: list[str], facts: FleetFacts) -> str:
    """"all 8 workers", "worker tcp://a", "workers tcp://a, tcp://b, client"..."""
    all_workers = [m.address for m in facts.workers]
    workers = [label.split(" ", 1)[1] for label in labels if label.startswith(f"{WORKER} ")]
    parts = []
    if workers:
        missing = [a for a in all_workers if a not in workers]
        if not missing and len(workers) > 1:
            parts.append(f"all {len(workers)} workers")
        elif len(workers) == 1:
            parts.append(f"worker {workers[0]}")
        elif len(workers) > _LIST_INLINE and len(missing) < len(workers):
            parts.append(f"{len(workers)} of {len(all_workers)} workers (all but "
                         f"{', '.join(missing)})")
        else:
            parts.append("workers " + ", ".join(workers))
    parts += [label for label in labels if not label.startswith(f"{WORKER} ")]
    return ", ".join(parts)


def difference_findings(differences: list[Difference], facts: FleetFacts) -> list[Finding]:
    """FLT001: one finding per category and group of members that differ the same way."""
    groups: dict[tuple, list[tuple[Difference, str]]] = defaultdict(list)
    for difference in differences:
        if difference.majority is None:
            groups[difference.category, difference.severity, None].append((difference, ""))
            continue
        for value, members in difference.deviations:
            groups[difference.category, difference.severity, tuple(members)].append(
                (difference, value))
    findings = []
    for (category, severity, members), items in sorted(
            groups.items(), key=lambda kv: (CATEGORY_ORDER.index(kv[0][0]), str(kv[0][2]))):
        settings = _unique(d.key for d, _ in items)
        if members is None:
            labels = _unique(m for d, _ in items for _, ms in d.deviations for m in ms)
            title = f"Workers disagree on {category} (no majority): {_names(settings)}"
            evidence = [f"{d.key}: " + "; ".join(
                f"{value} on {_addresses(ms)}" for value, ms in d.deviations)
                for d, _ in items]
        else:
            labels = list(members)
            count = len(members)
            if items[0][0].outsiders:
                title = f"The {members[0]} differs from the workers in {category}: " \
                        f"{_names(settings)}"
                evidence = [f"{d.key}: {value} (workers: {d.majority}, on {d.compared})"
                            for d, value in items]
            else:
                title = (f"{count} worker{'s' if count != 1 else ''} "
                         f"differ{'s' if count == 1 else ''} from the majority in {category}: "
                         f"{_names(settings)}")
                evidence = [f"{d.key}: {d.describe(value)} (majority: {d.majority}, on "
                            f"{len(d.majority_members)} of {d.compared} workers)"
                            for d, value in items]
        if len(evidence) > _MAX_EVIDENCE:
            hidden = len(evidence) - _MAX_EVIDENCE
            evidence = [*evidence[:_MAX_EVIDENCE],
                        f"... and {hidden} more (outcome.diff in --format json lists all)"]
        findings.append(get("FLT001").finding(
            evidence, title=title, severity=severity, where=where(labels, facts),
            why=_WHY.get(category, ""), fix=_FIX.get(category, "")))
    return findings


_WHY = {
    PYTHON: "Tasks and results are pickled between members; Python versions must match.",
    PACKAGES: "The same task can import other code, or fail to unpickle, depending on "
                "where it runs.",
    LIBRARIES: "Numerical results, speed and crashes depend on which BLAS/OpenMP "
                        "runtime serves the call, so they depend on the worker.",
    THREADS: "Workers with other limits run different numbers of threads per task: "
                       "some oversubscribe, some leave CPUs idle.",
    ENVIRONMENT: "Variables that steer the numerical stack differ, so behaviour differs.",
    CPU: "Binaries built for instructions one worker lacks die there with Illegal "
           "instruction; kernels chosen per CPU give results that differ in the last bits.",
    CPUS: "Pools sized for one worker's CPUs are wrong on the others.",
}
_FIX = {
    PYTHON: "Run every member from the same image or environment.",
    PACKAGES: "Install the same versions everywhere (one lock file or container tag) and "
                "restart the odd workers.",
    LIBRARIES: "Use one environment for all workers; remove LD_PRELOAD or preload "
                        "scripts that load another runtime on some of them.",
    THREADS: "Set thread variables in one place, e.g. Dask's "
                       "distributed.nanny.pre-spawn-environ, or the script that starts all "
                       "workers.",
    ENVIRONMENT: "Start all workers with the same environment.",
    CPU: "Build for the oldest CPU, or pin tasks that need newer instructions with worker "
           "resources.",
    CPUS: "Size thread pools per worker from its own CPUs (OMP_NUM_THREADS per host).",
}


def oversubscription_findings(facts: FleetFacts) -> list[Finding]:
    """FLT005: per host, Dask threads × pool size per thread above the CPUs there."""
    by_host: dict[str, list[MemberFacts]] = defaultdict(list)
    for member in facts.workers:
        if member.ok:
            by_host[member.host or member.hostname].append(member)
    findings = []
    for members in (by_host[key] for key in sorted(by_host)):
        host = members[0].machine
        cpus = max((m.snapshot.system.effective_cpus or 0) for m in members if m.snapshot)
        if not cpus:
            continue
        lines, demand = [], 0
        for member in members:
            pool, source = _pool_size(member)
            threads = member.nthreads or 1
            demand += threads * pool
            lines.append(f"worker {member.address}: {threads} Dask thread(s) × {pool} "
                         f"({source}) = {threads * pool}")
        if demand <= cpus:
            continue
        findings.append(get("FLT005").finding(
            severity=Severity.WARNING if demand >= 2 * cpus else Severity.INFO,
            evidence=[f"host {host}: {cpus} effective CPU(s), {len(members)} worker(s)",
                      *lines, f"total: {demand} threads may run at once on {cpus} CPU(s)"],
            title=f"{demand} threads may run at once on host {host}, which has {cpus} CPU(s)",
            why="Every Dask thread that calls into BLAS/OpenMP can start a whole pool; more "
                "runnable threads than CPUs make compute-bound tasks slower.",
            fix="Keep workers × threads × pool size ≤ CPUs on each host: set OMP_NUM_THREADS "
                "through distributed.nanny.pre-spawn-environ or the workers' environment, "
                "or start fewer workers/threads.",
            where=where([m.label for m in members], facts)))
    return findings


def _pool_size(member: MemberFacts) -> tuple[int, str]:
    """The pool one task may start on this worker, and where that number comes from."""
    snapshot = member.snapshot
    assert snapshot is not None
    sizes = [(lib.num_threads, lib.vendor) for lib in snapshot.libraries
             if lib.family in ("openmp", "blas") and lib.num_threads]
    if sizes:
        size, vendor = max(sizes)
        return size, f"{VENDOR_NAMES.get(vendor, vendor)} pool"
    for name in THREAD_LIMIT_VARS:
        value = snapshot.environment.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value), f"{name}={value}, no pool loaded yet"
    count = snapshot.system.cpu_count or 1
    return count, "no thread limit set: a pool would size to the host's CPUs"


# -- outcome ----------------------------------------------------------------------------------

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
                         _addresses(members)])
    return {"title": title, "columns": ["category", "setting", "majority", "differs",
                                        "where"], "rows": rows}


def _addresses(labels: list[str]) -> str:
    return ", ".join(label.split(" ", 1)[1] if label.startswith(f"{WORKER} ") else label
                     for label in labels)


def _names(settings: list[str]) -> str:
    shown = settings[:4]
    more = len(settings) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)

