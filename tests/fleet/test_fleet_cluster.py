"""Fleet mode on a real cluster whose workers differ: the diff and the per-worker findings."""

from __future__ import annotations

import json
import os

import pytest
from fleet_helpers import report_json, run_cli

import numdoctor.fleet
from numdoctor.findings import Report
from numdoctor.render import render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(mixed_fleet) -> Report:
    return numdoctor.fleet.check(mixed_fleet.client, timeout=90, progress=False)


def findings(report: Report, code: str) -> list:
    return [f for f in report.findings if f.code == code]


def test_every_member_answers(report, mixed_fleet):
    outcome = report.outcome
    assert len(outcome["workers"]) == 4
    assert {w["status"] for w in outcome["workers"].values()} == {"ok"}
    assert outcome["scheduler"]["status"] == "ok"
    assert outcome["client"]["status"] == "ok"
    assert report.snapshot == outcome["client"]["snapshot"]
    names = {w["name"] for w in outcome["workers"].values()}
    assert {"threads", "iomp"} <= names
    assert "4 answered" in outcome["summary"]


def test_thread_setting_difference_names_the_worker(report, mixed_fleet):
    threads = mixed_fleet.address_of("threads")
    flagged = [f for f in findings(report, "FLT001") if "thread settings" in f.title]
    assert len(flagged) == 1, [f.title for f in findings(report, "FLT001")]
    finding = flagged[0]
    assert finding.where == f"worker {threads}"
    assert f"OMP_NUM_THREADS: {mixed_fleet.omp_threads} (majority: 1, on 3 of 4 workers)" \
        in finding.evidence
    row = next(d for d in report.outcome["diff"] if d["setting"] == "OMP_NUM_THREADS")
    assert row["majority"] == "1"
    assert row["deviations"] == [{"value": mixed_fleet.omp_threads,
                                  "how": mixed_fleet.omp_threads,
                                  "members": [f"worker {threads}"]}]


def test_preloaded_intel_openmp_shows_in_the_diff(report, mixed_fleet):
    iomp = mixed_fleet.address_of("iomp")
    flagged = [f for f in findings(report, "FLT001") if "native libraries" in f.title]
    assert len(flagged) == 1
    assert flagged[0].where == f"worker {iomp}"
    (line,) = flagged[0].evidence
    assert line.startswith("OpenMP runtimes: has Intel libiomp5 [intel-openmp")
    assert "majority: GNU libgomp [scikit-learn" in line


def test_odd_workers_carry_their_own_findings(report, mixed_fleet):
    iomp, threads = mixed_fleet.address_of("iomp"), mixed_fleet.address_of("threads")
    # GNU + Intel OpenMP in one process: only where the preload loaded libiomp5.
    assert [f.where for f in findings(report, "OMP001")] == [f"worker {iomp}"]
    # A libgomp pool sized by the larger OMP_NUM_THREADS: only on that worker.
    assert [f.where for f in findings(report, "THR001")] == [f"worker {threads}"]
    members = report.outcome["workers"]
    assert "OMP001" in members[iomp]["findings"]
    assert "THR001" in members[threads]["findings"]


def test_identical_findings_are_grouped(report, mixed_fleet):
    # Both OpenBLAS copies (NumPy's and SciPy's) on every worker: one finding per distinct
    # evidence, never one per worker.
    blas = findings(report, "BLAS001")
    worker_groups = [f for f in blas if "worker" in f.where]
    assert len(worker_groups) <= 2
    assert any(f.where.startswith(("all 4 workers", "workers ")) for f in worker_groups)
    for finding in report.findings:
        assert finding.where, finding


def test_oversubscribed_host_is_reported(report, mixed_fleet):
    (finding,) = findings(report, "FLT005")
    assert finding.where.startswith("all 4 workers")
    assert any(line.startswith("total: ") for line in finding.evidence)


def test_renders_in_every_format(report):
    text = render(report, "text")
    assert "Cluster members" in text and "Heterogeneity" in text
    markdown = render(report, "markdown")
    assert "## numdoctor fleet report" in markdown
    data = json.loads(render(report, "json"))
    assert data["kind"] == "fleet"
    again = Report.from_dict(data)
    assert again.counts() == report.counts()


def test_run_on_workers_is_bounded_and_keyed_by_address(mixed_fleet):
    client = mixed_fleet.client
    results = numdoctor.fleet.run_on_workers(client, os.getpid, timeout=60)
    assert len(results) == 4
    assert all(r.ok and isinstance(r.value, int) for r in results.values())
    assert len({r.value for r in results.values()}) == 4
    failed = numdoctor.fleet.run_on_workers(client, int, args=("not a number",), timeout=60)
    assert {r.status for r in failed.values()} == {"error"}
    assert all("ValueError" in r.error for r in failed.values())
    scheduler = numdoctor.fleet.run_on_scheduler(client, os.getpid, timeout=60)
    assert scheduler.ok and scheduler.value not in {r.value for r in results.values()}


def test_cli_with_imports_compares_fresh_interpreters(mixed_fleet):
    result = run_cli("fleet", "--scheduler", mixed_fleet.address, "--import", "numpy",
                     "--format", "json", "--timeout", "120", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    data = report_json(result)
    workers = data["outcome"]["workers"]
    assert len(workers) == 4
    for worker in workers.values():
        assert worker["status"] == "ok", worker["error"]
        snapshot = worker["snapshot"]
        assert snapshot["collected_by"] == "subprocess"
        assert [(a["module"], a["status"]) for a in snapshot["imports"]] == [("numpy", "ok")]
    # The subprocess inherits the worker's environment: the odd OMP_NUM_THREADS still shows.
    threads = mixed_fleet.address_of("threads")
    row = next(d for d in data["outcome"]["diff"] if d["setting"] == "OMP_NUM_THREADS")
    assert row["deviations"][0]["members"] == [f"worker {threads}"]
