"""Run one scenario under the `numdoctor run` supervisor and classify what happened.

Every scenario is its own `numdoctor run --report R.json -- python scenario.py`, so the probe
gets the supervisor's hang detection (no output, no CPU), all-thread Python and native stacks,
crash classification and message knowledge base for free, and scenarios can run side by side
without sharing signal handlers or a terminal. Where the probe keeps fork servers
(forkserver.py), that run is a fork of an interpreter that has imported the scenario's
modules already; otherwise a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from numdoctor.core.status import Status
from numdoctor.probe.forkserver import Finished, ForkServers
from numdoctor.probe.scenarios import OK_MARKER, Scenario, script
from numdoctor.probe.turns import ENV_TURN

# Outcomes, worst first.
OUTCOMES = ("crash", "hang", "error", "slow", "pass", "not-run")
# What the supervisor's report says happened to a scenario.
_STOPPED = {Status.HANG, Status.SPINNING, Status.TIMEOUT, Status.DEADLOCK}
_DIED = {Status.CRASH, Status.SIGNAL, Status.OOM}


@dataclass
class Result:
    scenario: Scenario
    outcome: str  # one of OUTCOMES
    seconds: float = 0.0  # wall time of the whole scenario process
    op_seconds: float | None = None  # time of the operation(s), as the script measured it
    detail: str = ""  # one line: signal, exception, "no progress for 5 s"...
    exit_code: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)  # from the run report
    sections: list[dict[str, Any]] = field(default_factory=list)  # stacks etc.
    stderr_tail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in ("crash", "hang", "error")


def run_scenario(scenario: Scenario, *, timeout: float, hang_timeout: float,
                 base_env: dict[str, str] | None = None, turns: str | None = None,
                 servers: ForkServers | None = None,
                 idle: Callable[[], None] | None = None) -> Result:
    """`turns`: the address of the probe's TurnKeeper when scenarios run side by side;
    `servers`: the probe's fork servers, if it keeps them; `idle`: called at most once, when
    the scenario's program no longer uses its CPU (a forked scenario waiting in a deadlock)."""
    env = scenario_environment(scenario, base_env, turns)
    with tempfile.TemporaryDirectory(prefix="numdoctor-probe-") as tmp:
        path = os.path.join(tmp, "scenario.py")
        report_path = os.path.join(tmp, "report.json")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script(scenario, take_turns=bool(turns)))
        # Busy is not hung: a worker that re-imports torch keeps a CPU busy for seconds
        # without output. Only an idle, silent tree is a hang; busy ones get the hard limit.
        arguments = ["--hang-timeout", f"{hang_timeout:g}", "--spin-timeout", "0",
                     "--timeout", f"{timeout:g}", "--report", report_path, "--format", "json",
                     "--", sys.executable, path]
        limit = timeout + hang_timeout + 60
        start = time.monotonic()
        done: Finished | subprocess.CompletedProcess[str] | None = None
        if servers is not None:
            done = servers.run(scenario.all_imports(), env, arguments, cwd=tmp, limit=limit,
                               idle=idle)
            if done is None:  # no server for this group: a fresh process, from the start
                start = time.monotonic()
        try:
            if done is None:
                done = subprocess.run([sys.executable, "-m", "numdoctor", "run", *arguments],
                                      env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, errors="replace", timeout=limit, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            # The supervisor itself did not come back: say so rather than guess.
            return Result(scenario, "hang", time.monotonic() - start,
                          detail="the numdoctor run supervisor did not return",
                          stderr_tail=_tail(exc.stderr))
        seconds = time.monotonic() - start
        report = _load(report_path)
    return _classify(scenario, done, seconds, report)


def scenario_environment(scenario: Scenario, base_env: dict[str, str] | None = None,
                         turns: str | None = None) -> dict[str, str]:
    """The environment a scenario's `numdoctor run` starts with."""
    env = dict(os.environ if base_env is None else base_env)
    env.pop(ENV_TURN, None)
    if turns:
        env[ENV_TURN] = turns
    env.update(scenario.env_dict)
    # The probe's own process may carry threadpoolctl's setting; a scenario must not.
    if "KMP_DUPLICATE_LIB_OK" not in scenario.env_dict:
        env.pop("KMP_DUPLICATE_LIB_OK", None)
    return env


def _classify(scenario: Scenario, done: Finished | subprocess.CompletedProcess[str],
              seconds: float,
              report: dict[str, Any] | None) -> Result:
    result = Result(scenario, "pass", seconds, exit_code=done.returncode,
                    stderr_tail=_tail(done.stderr))
    for line in done.stdout.splitlines():
        if line.startswith(OK_MARKER):
            try:
                result.op_seconds = float(line.split()[1])
            except (IndexError, ValueError):
                pass
    if report is not None:
        result.findings = report.get("findings", [])
        outcome = report.get("outcome") or {}
        result.sections = outcome.get("sections", [])
        result.detail = outcome.get("summary", "")
        status = outcome.get("status", "")
    else:
        status = ""
    code = done.returncode
    if code == 0 and result.op_seconds is not None:
        result.detail = ""
        return result
    if code == 124 or status in _STOPPED:
        result.outcome = "hang"
    elif code > 128 or status in _DIED or "failed: -" in done.stderr \
            or "exit code -" in done.stderr:
        result.outcome = "crash"
    else:
        result.outcome = "error"
    if not result.detail:
        result.detail = _last_line(done.stderr) or f"exit status {code}"
    return result


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
