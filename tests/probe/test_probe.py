"""`numdoctor probe` on this machine's real stack: real subprocesses that really hang."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys

import pytest

from numdoctor.probe.scenarios import import_orders


def probe(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, dict]:
    full_env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "numdoctor", "probe", "--format", "json",
                           "--jobs", "2", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def test_healthy_environment_passes_every_scenario():
    code, report = probe("--import", "numpy,scipy", "--op", "numpy.matmul,scipy.lu")
    assert code == 0
    outcome = report["outcome"]
    # 2 orders x 2 operations x 2 environments, plus each operation alone
    assert len(outcome["scenarios"]) == 8
    assert {s["outcome"] for s in outcome["scenarios"]} == {"pass"}
    assert report["summary"]["error"] == 0
    assert outcome["summary"].startswith("8 scenarios")


def test_module_whose_import_crashes_is_a_crash_not_a_numdoctor_failure(tmp_path):
    (tmp_path / "crashy.py").write_text("import os\nos.abort()\n")
    code, report = probe("--import", "numpy,crashy", "--op", "numpy.matmul", "--orders",
                         "given", env={"PYTHONPATH": str(tmp_path)})
    assert code == 1
    (crash,) = [f for f in report["findings"] if f["code"] == "PRB002"]
    assert crash["title"].startswith("numpy.matmul crashes after import numpy, crashy")
    evidence = "\n".join(crash["evidence"])
    assert "SIGABRT" in evidence
    # The minimal reproduction keeps the culprit; no mitigation can make it pass.
    assert "crashy" in crash["evidence"][0]
    assert "passes (verified)" not in evidence
    assert report["outcome"]["failures"][0]["script"].count("import crashy") == 1


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_fork_after_openmp_deadlock_and_verified_mitigations():
    code, report = probe("--import", "torch", "--op", "torch.mm", "--mode", "fork",
                         "--hang-timeout", "4")
    assert code == 1
    (hang,) = [f for f in report["findings"] if f["code"] == "PRB001"
               and f["title"].endswith("(op in the parent, then os.fork() and the op in the "
                                       "child)")]
    evidence = "\n".join(hang["evidence"])
    assert "with OMP_NUM_THREADS=1: passes (verified)" in evidence
    assert 'with start method "spawn": passes (verified)' in evidence
    assert "OMP_NUM_THREADS=1" in hang["fix"]
    # The supervisor's diagnosis of the stuck child comes along, naming libgomp and torch.
    fork = [f for f in report["findings"] if f["code"] == "FORK001"]
    assert fork and "libgomp" in "\n".join(fork[0]["evidence"])
    assert "torch" in "\n".join(fork[0]["evidence"])
    # With OMP_NUM_THREADS=1 in the matrix itself, the same scenario passes.
    passing = [s for s in report["outcome"]["scenarios"]
               if s["mode"] == "fork" and s["env"] == {"OMP_NUM_THREADS": "1"}]
    assert passing and passing[0]["outcome"] == "pass"


def test_covering_set_of_import_orders_beyond_four_modules():
    modules = ["a", "b", "c", "d", "e"]
    orders = import_orders(modules, "all")
    assert len(orders) < 120
    assert {order[0] for order in orders} == set(modules)
    for x, y in itertools.permutations(modules, 2):
        assert any(order.index(x) < order.index(y) for order in orders), (x, y)
    assert len(import_orders(["a", "b", "c"], "all")) == 6
    assert import_orders(["a", "b", "c"], "given") == [("a", "b", "c")]


def test_usage_errors():
    for args in (["--op", "numpy.nope"], ["--env", "NOEQUALS"], ["--mode", "thread"],
                 ["--jobs", "0"], ["--timeout", "0"]):
        done = subprocess.run([sys.executable, "-m", "numdoctor", "probe", "--import", "numpy",
                               *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_slow_verdict_of_a_parallel_run_is_checked_with_nothing_else_running():
    from numdoctor.probe.canaries import CANARIES
    from numdoctor.probe.engine import ProbeOptions, ProbeResult, _confirm_slow, _Runner
    from numdoctor.probe.runner import Result
    from numdoctor.probe.scenarios import Scenario

    canary = CANARIES["numpy.matmul"]
    scenario = Scenario(("numpy",), canary, "inprocess", ())
    # As a neighbour's spinning workers can make it look in a --jobs 2 run: 40x its alone.
    seen = Result(scenario, "slow", 2.5, op_seconds=2.0, detail="2.00 s against 0.05 s")
    options = ProbeOptions(modules=["numpy"], jobs=2, timeout=60, hang_timeout=10)
    out = ProbeResult(options, results=[seen], slow=[seen],
                      baselines={canary.name: Result(scenario, "pass", 0.3, op_seconds=0.05)})
    runner = _Runner(options, None)
    try:
        _confirm_slow(out, runner)
    finally:
        runner.close()
    assert out.slow == []
    assert [r.outcome for r in out.results] == ["pass"]
    assert out.results[0].op_seconds < 2.0
    assert out.notes == ["1 'slow' result(s) of the parallel run were not slow when run alone "
                         "and count as passes"]


def test_fresh_interpreters_give_the_same_verdicts_as_fork_servers():
    verdicts = {}
    for flag in ((), ("--fresh",)):
        code, report = probe("--import", "numpy", "--op", "numpy.matmul", "--mode",
                             "inprocess,fork", *flag)
        assert code == 0
        verdicts[flag] = sorted((s["outcome"], s["mode"]) for s in report["outcome"]["scenarios"])
        assert report["outcome"]["notes"] == []
    assert verdicts[()] == verdicts[("--fresh",)]
    assert len(verdicts[()]) == 4  # 2 modes x 2 environments
