"""What a probe found: its scenarios that hang, crash, fail or slow down (PRB001-PRB005)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Stage, declare

if TYPE_CHECKING:
    from numdoctor.probe.engine import Failure, ProbeResult
    from numdoctor.probe.runner import Result


PRB001 = declare("PRB001", "An operation hangs in a probe scenario", Severity.ERROR, """
    In at least one combination of import order, threading environment and process mode the
    operation made no progress (no output, no CPU) until the probe's hang timeout, and was
    killed. The evidence gives the smallest failing combination found, the stacks the
    supervisor took before killing it, and each mitigation that was re-run with its result.

    **Fix.** Apply a mitigation marked "passes (verified)"; the standalone script in the report
    reproduces the hang for a bug report.
    """, Stage.PROBE)
PRB002 = declare("PRB002", "An operation crashes in a probe scenario", Severity.ERROR, """
    The scenario's process (or its forked child or worker) died from a signal, e.g. SIGSEGV
    or SIGABRT ("OMP: Error #15"). The evidence gives the smallest failing combination, the
    signal, the library the supervisor blamed and each mitigation re-run with its result.

    **Fix.** Apply a mitigation marked "passes (verified)"; attach the standalone script to
    the bug report of the library named.
    """, Stage.PROBE)
PRB003 = declare("PRB003", "An operation raises an error in a probe scenario", Severity.ERROR, """
    The scenario exited with an error instead of completing: an exception in the operation,
    a failed import in that order, or a worker that exited non-zero.

    **Fix.** Read the error line in the evidence; run the standalone script to see the full
    traceback.
    """, Stage.PROBE)
PRB004 = declare("PRB004", "An operation is much slower after other imports", Severity.WARNING, """
    The operation completed, but took at least 3x (and 0.5 s more than) its time when run
    alone in a fresh interpreter. Typical causes: oversubscribed thread pools (two OpenMP
    runtimes, or several BLAS pools sized to all cores) started by the other modules.

    **Fix.** Limit threads (OMP_NUM_THREADS) or see `numdoctor check --import` with the same
    modules for the conflicting runtimes.
    """, Stage.PROBE)
PRB005 = declare("PRB005", "A requested module is not installed", Severity.INFO, """
    A module named with `--import` is not installed, so no scenario includes it.

    **Fix.** Install it, or drop it from `--import`.
    """, Stage.PROBE)

_VERB = {"hang": "hangs", "crash": "crashes", "error": "fails"}
_RULES = {"hang": PRB001, "crash": PRB002, "error": PRB003}

def probe_findings(result: ProbeResult) -> list[Finding]:
    """The findings of a probe: each failure group (minimised, with its verified fixes), the
    run diagnoses behind it, the slow operations, the modules that are missing."""
    findings: list[Finding] = []
    for module in result.missing:
        findings.append(PRB005.finding([f"{module}: not found on sys.path"],
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
        if slow.op_seconds is None or not base.op_seconds:
            continue  # "slow" is decided on both times; without them there is no ratio
        findings.append(PRB004.finding(
            [f"scenario: {slow.scenario.label}", slow.detail,
             f"alone: {base.scenario.label}"],
            title=f"{slow.scenario.canary.name} is {slow.op_seconds / base.op_seconds:.1f}x "
                  f"slower after import {', '.join(slow.scenario.imports)}",
            fix="Limit thread pools (OMP_NUM_THREADS) and check `numdoctor check --import "
                f"{','.join(slow.scenario.all_imports())}` for conflicting runtimes.",
        ))
    return findings


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
    return _RULES[rep.outcome].finding(evidence, title=title, fix=fix, why=_why(rep))


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
