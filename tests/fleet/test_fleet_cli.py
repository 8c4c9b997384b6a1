"""`numdoctor fleet` on the command line: a local cluster, and every way to get it wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from fleet_helpers import base_env, report_json, run_cli

from numdoctor.cli import main


def test_needs_a_target(capsys):
    assert main(["fleet"]) == 2
    err = capsys.readouterr().err
    assert "one of the arguments --scheduler --local is required" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--local", "0"], "needs at least 1 worker"),
    (["--local", "two"], "'two' is not a whole number"),
    (["--local", "1", "--timeout", "0"], "--timeout must be positive"),
    (["--local", "1", "--import", "numpy,,1bad"], "'1bad' is not a module name"),
    (["--local", "1", "--scheduler", "tcp://x:1"], "not allowed with argument"),
    (["--local", "1", "--probe=--jobs 0"], "--probe: --jobs must be at least 1"),
])
def test_usage_errors_are_one_line(capsys, args, message):
    assert main(["fleet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_distributed_says_which_extra_to_install():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from numdoctor.cli import main; sys.exit(main(['fleet', '--local', '1']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=base_env(), timeout=60)
    assert result.returncode == 2
    assert "pip install 'numdoctor[dask]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_scheduler_fails_within_the_timeout():
    address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    result = run_cli("fleet", "--scheduler", address, "--timeout", "3", timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert f"cannot connect to the scheduler at {address} within 3 s" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert elapsed < 3 + 15, elapsed


@pytest.mark.slow
def test_local_cluster_end_to_end(tmp_path):
    out = tmp_path / "report.json"
    result = run_cli("fleet", "--local", "2", "--format", "json", "--output", str(out),
                     "--fail-on", "never", "--timeout", "120")
    assert result.returncode == 0, result.stderr
    assert "report written to" in result.stderr
    data = report_json(subprocess.CompletedProcess([], 0, out.read_text(), ""))
    assert data["kind"] == "fleet"
    outcome = data["outcome"]
    assert len(outcome["workers"]) == 2
    assert {w["status"] for w in outcome["workers"].values()} == {"ok"}
    assert {w["nthreads"] for w in outcome["workers"].values()} == {1}
    # Dask's nanny gives its workers OMP_NUM_THREADS=1: the same on both, so no difference.
    assert not [d for d in outcome["diff"] if d["setting"] == "OMP_NUM_THREADS"]
    for worker in outcome["workers"].values():
        assert worker["snapshot"]["environment"]["OMP_NUM_THREADS"] == "1"
        assert worker["packages"]["numdoctor"]


def test_importing_fleet_mode_does_not_import_dask():
    code = ("import sys, numdoctor.fleet; numdoctor.fleet.check; numdoctor.fleet.run_on_workers\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', "
            "'distributed'))\n"
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=base_env(), timeout=60)
    assert result.returncode == 0, result.stderr
