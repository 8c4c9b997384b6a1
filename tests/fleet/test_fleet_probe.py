"""`numdoctor fleet --probe`: a probe matrix spread over the workers of a real cluster."""

from __future__ import annotations

import os
import pickle
import subprocess
import threading
import time

import pytest
from fleet_helpers import HERE, NANNY_LIKE, Fleet, base_env, report_json, run_cli, wait_for_file

import numdoctor.fleet
import numdoctor.fleet.probing
from numdoctor.cli import main
from numdoctor.findings import Report
from numdoctor.fleet.probe_model import FleetProbe, Placement, Share
from numdoctor.fleet.probe_report import build_report
from numdoctor.probe import CANARIES, ProbeOptions, ProbeResult
from numdoctor.probe.engine import Failure, Mitigation
from numdoctor.probe.runner import Result
from numdoctor.probe.scenarios import Scenario
from numdoctor.render import render

TIMEOUT = 30.0  # how long a worker may take beyond its scenarios' own limits


def _options(modules, ops, **kwargs) -> ProbeOptions:
    kwargs = {"timeout": 60, "hang_timeout": 10, **kwargs}
    return ProbeOptions(modules=modules, ops=ops, orders="given", **kwargs)


@pytest.fixture(scope="module")
def odd_fleet(tmp_path_factory):
    """One LocalCluster worker, and one worker whose PYTHONPATH holds a module that aborts
    at import (a broken package installed on one node only)."""
    tmp = tmp_path_factory.mktemp("probe-fleet")
    site = tmp / "site"
    site.mkdir()
    (site / "crashy.py").write_text("import os\nos.abort()\n")
    path = os.pathsep.join(filter(None, (str(site), os.environ.get("PYTHONPATH"))))
    fleet = Fleet(tmp, local_workers=1)
    try:
        fleet.add_worker("odd", base_env(**NANNY_LIKE, PYTHONPATH=path))
        fleet.connect()
        yield fleet
    finally:
        fleet.close()


def _addresses(fleet: Fleet) -> tuple[str, str]:
    return fleet.address_of("0"), fleet.address_of("odd")


@pytest.mark.slow
def test_a_healthy_probe_passes_on_every_worker(odd_fleet):
    local, odd = _addresses(odd_fleet)
    report = numdoctor.fleet.probe(
        odd_fleet.client, _options(["numpy"], ["numpy.matmul", "numpy.svd"]),
        timeout=TIMEOUT, progress=False)
    assert report.kind == "fleet"
    probe = report.outcome["probe"]
    # 1 order x 2 operations x 2 threading environments
    assert len(probe["scenarios"]) == 4
    assert {s["outcome"] for s in probe["scenarios"]} == {"pass"}
    assert {s["worker"] for s in probe["scenarios"]} == {local, odd}
    assert not probe["not_run"]
    for address in (local, odd):
        worker = probe["workers"][address]
        assert worker["status"] == "ok"
        # Each worker ran each operation alone: its own reference for "slow".
        assert {name: b["outcome"] for name, b in worker["baselines"].items()} == \
            {"numpy.matmul": "pass", "numpy.svd": "pass"}
        # Dask's nanny (or our stand-in for it) sets OMP_NUM_THREADS=1; scenarios inherit it.
        assert worker["environment"]["OMP_NUM_THREADS"] == "1"
    assert not report.fails("error")
    assert not [f for f in report.findings if f.code.startswith("PRB")]
    # The fleet check ran as well: the members table and the diff are in the same report.
    assert len(report.outcome["workers"]) == 2
    assert "4 scenarios on 2 of 2 workers" in report.outcome["summary"]
    text = render(report, "text")
    assert "Probe: scenario matrix" in text and "Heterogeneity" in text


@pytest.mark.slow
def test_a_failure_is_reported_with_the_worker_that_ran_it(odd_fleet):
    local, odd = _addresses(odd_fleet)
    report = numdoctor.fleet.probe(
        odd_fleet.client, _options(["numpy", "crashy"], ["numpy.matmul"]),
        timeout=TIMEOUT, check=False, progress=False)
    assert report.fails("error")
    probe = report.outcome["probe"]
    crashy = [s for s in probe["scenarios"] if "crashy" in s["imports"]]
    # Only the worker that has crashy can run those scenarios; it ran both.
    assert len(crashy) == 2
    assert {(s["worker"], s["outcome"]) for s in crashy} == {(odd, "crash")}

    (crash,) = [f for f in report.findings if f.code == "PRB002"]
    assert crash.where == f"worker {odd}"
    assert crash.title.startswith("numpy.matmul crashes after import numpy, crashy")
    evidence = "\n".join(crash.evidence)
    assert "SIGABRT" in evidence
    # Minimised and mitigated on that worker: no mitigation makes an abort at import pass.
    (failure,) = probe["failures"]
    assert failure["worker"] == odd and failure["followed_up"]
    assert failure["mitigations"] and not any(m["verified"] for m in failure["mitigations"])
    assert "still crashes" in evidence
    assert failure["script"].count("import crashy") == 1

    # The other worker lacks the module: reported, not failed.
    (missing,) = [f for f in report.findings if f.code == "PRB005"]
    assert missing.title == "crashy is not installed"
    assert missing.where == f"worker {local}"
    assert probe["workers"][local]["missing"] == ["crashy"]
    assert probe["workers"][local]["baselines"]["numpy.matmul"]["outcome"] == "pass"
    markdown = render(report, "markdown")
    assert f"Reproduce: import numpy,crashy | numpy.matmul | inprocess (failed on {odd})" \
        in markdown


def _doomed_fleet(tmp_path, mode: str) -> Fleet:
    fleet = Fleet(tmp_path, local_workers=1)
    try:
        fleet.add_worker("doomed", base_env(**NANNY_LIKE, NUMDOCTOR_TEST_DOOM=mode,
                                             NUMDOCTOR_TEST_MARKER=str(tmp_path / "doomed")),
                         preload=HERE / "preload_probe_doomed.py")
        fleet.connect()
    except BaseException:
        fleet.close()
        raise
    return fleet


def _held_scenario_moved(report: Report, local: str, doomed: str, held: str) -> None:
    """Every scenario still ran, on the worker that was left; the one it held moved there."""
    probe = report.outcome["probe"]
    assert {(s["worker"], s["outcome"]) for s in probe["scenarios"]} == {(local, "pass")}
    assert len(probe["scenarios"]) == 2 and not probe["not_run"]
    (moved,) = [s for s in probe["scenarios"] if s["reassigned_from"]]
    assert moved["reassigned_from"] == [doomed]
    (row,) = [r for r in next(s for s in report.outcome["sections"]
                              if s["title"] == "Probe: scenario matrix")["rows"]
              if r[0] == held]
    assert row[1] == local and row[5].startswith(f"(re-assigned from {doomed})")
    assert probe["workers"][doomed]["stage"] == "scenarios"


@pytest.mark.slow
def test_a_worker_that_dies_in_its_share_is_reported_and_its_scenario_moves(tmp_path):
    fleet = _doomed_fleet(tmp_path, "block")
    try:
        local, doomed = fleet.address_of("0"), fleet.address_of("doomed")
        killed = threading.Event()

        def kill_when_running() -> None:
            if wait_for_file(tmp_path / "doomed", timeout=90):
                fleet.kill("doomed")
                killed.set()

        killer = threading.Thread(target=kill_when_running, daemon=True)
        killer.start()
        start = time.monotonic()
        report = numdoctor.fleet.probe(fleet.client, _options(["numpy"], ["numpy.matmul"]),
                                       timeout=TIMEOUT, check=False, progress=False)
        elapsed = time.monotonic() - start
        killer.join(timeout=5)
    finally:
        fleet.close()
    assert killed.is_set(), "the doomed worker never started a scenario"
    assert elapsed < 60, elapsed
    held = (tmp_path / "doomed").read_text()
    _held_scenario_moved(report, local, doomed, held)
    assert report.outcome["probe"]["workers"][doomed]["status"] == "lost"
    (lost,) = [f for f in report.findings if f.code == "FLT003"]
    assert lost.where == f"worker {doomed}"
    assert "during the probe's scenarios" in lost.evidence
    assert f"scenarios it had: {held}" in lost.evidence
    assert "of those, 1 ran on another worker and 0 were not run" in lost.evidence[-1]
    assert "1 lost during the probe" in report.outcome["summary"]


@pytest.mark.slow
def test_a_worker_that_freezes_in_its_share_is_reported_hung_in_time(tmp_path, monkeypatch):
    # Less room for the supervisor's own start and stack dumps than in real use, so that a
    # frozen worker is given up on after 10 + 5 + 1 s plus the 4 s grace.
    monkeypatch.setattr(numdoctor.fleet.probing, "SUPERVISOR_SLACK", 1.0)
    fleet = _doomed_fleet(tmp_path, "freeze")
    try:
        local, doomed = fleet.address_of("0"), fleet.address_of("doomed")
        start = time.monotonic()
        report = numdoctor.fleet.probe(fleet.client, _options(["numpy"], ["numpy.matmul"],
                                                              timeout=10, hang_timeout=5),
                                       timeout=4, check=False, progress=False)
        elapsed = time.monotonic() - start
    finally:
        fleet.close()
    held = (tmp_path / "doomed").read_text()
    assert 20 <= elapsed < 20 + 25, elapsed
    _held_scenario_moved(report, local, doomed, held)
    assert report.outcome["probe"]["workers"][doomed]["status"] == "hang"
    (hung,) = [f for f in report.findings if f.code == "FLT002"]
    assert hung.where == f"worker {doomed}"
    assert hung.title == ("No answer during the probe's scenarios: the worker is frozen or "
                          "unreachable")
    assert f"scenarios it had: {held}" in hung.evidence
    assert report.fails("error")


def test_identical_failures_on_several_workers_are_one_finding():
    canary = CANARIES["numpy.svd"]
    scenario = Scenario(("numpy", "torch"), canary, "fork")
    options = ProbeOptions(modules=["numpy", "torch"], ops=["numpy.svd"])
    shares = []
    for n in (1, 2, 3):
        hang = Result(scenario, "hang", 6.0 + n, detail=f"no progress for 5 s ({n}.{n} s)")
        ok = Mitigation('with start method "spawn"', scenario.with_mode("mp-spawn"),
                        Result(scenario.with_mode("mp-spawn"), "pass", 1.0 + n, 0.1))
        result = ProbeResult(options, results=[hang],
                             failures=[Failure([hang], minimal=hang, mitigations=[ok])]
                             if n != 3 else [])
        if n == 3:
            result.results = [Result(scenario, "pass", 1.0, 0.1)]
        shares.append(Share(f"tcp://10.0.0.{n}:4000", present=["numpy", "torch"],
                            result=result))
    placements = [Placement(s.address, s.result.results[0]) for s in shares]
    fleet = FleetProbe(options, "tcp://10.0.0.9:8786", shares, placements=placements)
    report = build_report(fleet)
    (hang,) = [f for f in report.findings if f.code == "PRB001"]
    assert hang.where == "workers tcp://10.0.0.1:4000, tcp://10.0.0.2:4000"
    assert 'with start method "spawn": passes (verified)' in hang.evidence
    matrix = next(s for s in report.outcome["sections"]
                  if s["title"] == "Probe: scenario matrix")
    assert [row[1:3] for row in matrix["rows"]] == [
        ["tcp://10.0.0.1:4000", "hang"], ["tcp://10.0.0.2:4000", "hang"],
        ["tcp://10.0.0.3:4000", "pass"]]
    reproduce = [s["title"] for s in report.outcome["sections"]
                 if s["title"].startswith("Reproduce")]
    assert reproduce == [f"Reproduce: {scenario.label} (failed on tcp://10.0.0.1:4000, "
                         "tcp://10.0.0.2:4000)"]
    Report.from_dict(report.to_dict())  # JSON-able all the way down


def test_a_failure_whose_worker_was_lost_before_the_follow_up_says_so():
    scenario = Scenario(("numpy", "torch"), CANARIES["torch.mm"], "fork")
    crash = Result(scenario, "crash", 1.0, detail="killed by SIGSEGV")
    options = ProbeOptions(modules=["numpy", "torch"], ops=["torch.mm"])
    share = Share("tcp://10.0.0.1:4000", status="lost", stage="follow-up",
                  error="CommClosedError: Stream is closed", present=["numpy", "torch"],
                  result=ProbeResult(options, results=[crash], failures=[Failure([crash])]),
                  untried={scenario.label: "the worker was lost during the follow-up"})
    fleet = FleetProbe(options, "tcp://10.0.0.9:8786", [share],
                       placements=[Placement(share.address, crash)])
    report = build_report(fleet)
    (finding,) = [f for f in report.findings if f.code == "PRB002"]
    assert finding.where == "worker tcp://10.0.0.1:4000"
    assert finding.evidence[-1] == ("not minimised and no mitigation tried: the worker was "
                                    "lost during the follow-up")
    assert finding.fix.startswith("Run `numdoctor probe` with the same options")
    (lost,) = [f for f in report.findings if f.code == "FLT003"]
    assert "1 failure(s) it found were not minimised" in lost.evidence
    assert report.outcome["probe"]["failures"][0]["followed_up"] is False


def test_what_travels_to_and_from_workers_pickles():
    scenario = Scenario(("numpy",), CANARIES["numpy.matmul"], "fork", (("A", "1"),))
    result = Result(scenario, "crash", 1.0, findings=[{"code": "X"}], sections=[{"t": 1}])
    failure = Failure([result], minimal=result,
                      mitigations=[Mitigation("m", scenario.with_mode("mp-spawn"), result)])
    for thing in (scenario, result, failure):
        assert pickle.loads(pickle.dumps(thing)) == thing


@pytest.mark.parametrize(("spec", "message"), [
    ("--op numpy.nope", "unknown operation(s) numpy.nope"),
    ("--jobs 0", "--jobs must be at least 1"),
    ("--env NOEQUALS --fork", "--env 'NOEQUALS' is not of the form NAME=VALUE"),
    ("--mode thread --fork", "--mode: unknown mode(s) thread"),
    ("--import numpy,,1bad --fork", "'1bad' is not a module name"),
    ("--format json --fork", "--format is an option of numdoctor fleet itself"),
    ("--timeout 0 --fork", "--timeout must be positive"),
    ("--bogus 1", "unrecognized arguments: --bogus"),
    ("--import 'numpy", "cannot split"),
])
def test_probe_spec_usage_errors_are_one_line(capsys, spec, message):
    assert main(["fleet", "--local", "1", f"--probe={spec}"]) == 2
    err = capsys.readouterr().err
    assert "numdoctor fleet: --probe: " in err and message in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_command_line_probe_on_a_local_cluster(tmp_path):
    out = tmp_path / "report.json"
    result = run_cli("fleet", "--local", "2", "--timeout", "60", "--format", "json",
                     "--output", str(out), "--probe",
                     "--import numpy --op numpy.matmul --orders given", timeout=300)
    assert result.returncode == 0, result.stderr
    data = report_json(subprocess.CompletedProcess([], 0, out.read_text(), ""))
    assert data["kind"] == "fleet"
    probe = data["outcome"]["probe"]
    assert [s["outcome"] for s in probe["scenarios"]] == ["pass", "pass"]
    assert len({s["worker"] for s in probe["scenarios"]}) == 2
    assert set(probe["workers"]) == set(data["outcome"]["workers"])
    assert probe["options"]["modules"] == ["numpy"]
