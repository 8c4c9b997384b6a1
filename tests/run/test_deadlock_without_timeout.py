"""`numdoctor run` with no timeout at all: a proven deadlock ends the program within seconds,
with the headline naming the cycle; a program that merely waits is never stopped.

The programs are the hang fixtures of tests/hangs (real threads, a real pool whose worker is
killed, real torchrun ranks); here they go through the whole CLI, as a user runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import PYTHON, numdoctor_run, report, script

pytestmark = pytest.mark.slow

PROGRAMS = Path(__file__).resolve().parent.parent / "hangs" / "programs"
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def run_untimed(tmp_path, mark, *command: str, limit: float = 90):
    target = tmp_path / "report.json"
    started = time.monotonic()
    result = numdoctor_run("--report", str(target), "--", *command, cwd=PROGRAMS,
                           env={"NUMDOCTOR_TEST_MARK": mark}, timeout=limit)
    return result, report(target), time.monotonic() - started


def _headline(stderr: bytes) -> str:
    """numdoctor's first line (after what the program itself printed on stderr)."""
    return next(line for line in stderr.decode().splitlines() if line.startswith("numdoctor:"))


def test_a_lock_order_deadlock_ends_within_seconds_naming_both_threads(tmp_path, mark):
    result, data, seconds = run_untimed(tmp_path, mark, PYTHON, "lock_order.py")
    assert result.returncode == 124
    assert seconds < 20, f"{seconds:.1f} s"
    stderr = result.stderr.decode()
    headline = stderr.splitlines()[0]
    assert headline.startswith("numdoctor: the program is deadlocked: lock-order deadlock"), \
        stderr
    assert "lock_order.py:13" in headline and "lock_order.py:20" in headline
    assert "no timeout needed" in headline
    assert data["findings"][0]["code"] == "HANG004"
    assert data["outcome"]["status"] == "deadlock"


def test_a_pool_waiting_for_a_killed_worker_ends_naming_the_dead_pid(tmp_path, mark):
    result, data, seconds = run_untimed(tmp_path, mark, PYTHON, "pool_killed_worker.py")
    assert result.returncode == 124
    assert seconds < 20, f"{seconds:.1f} s"
    headline = result.stderr.decode().splitlines()[0]
    assert "the program is deadlocked: multiprocessing.Pool waits for worker pid" in headline
    assert "killed by SIGKILL" in headline
    assert data["findings"][0]["code"] == "HANG008"


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
def test_torchrun_ranks_in_different_collectives_end_without_a_timeout(tmp_path, mark):
    """A look at PyTorch processes takes about a second of ptrace: the look itself must not
    make the idle job look busy, or the proof is never confirmed."""
    result, data, seconds = run_untimed(tmp_path, mark, TORCHRUN, "--standalone",
                                        "--nproc-per-node", "2", "dist_mismatch.py")
    assert result.returncode == 124
    assert seconds < 60, f"{seconds:.1f} s"
    headline = _headline(result.stderr)
    assert "the program is deadlocked: collective mismatch: rank 0 waits in barrier " \
           "(dist_mismatch.py:19), rank 1 in all_reduce (dist_mismatch.py:10)" in headline, \
        headline
    assert data["findings"][0]["code"] == "HANG009"


def test_a_program_that_waits_is_never_stopped_without_a_timeout(tmp_path, mark):
    """Sleeping, then finishing: idle for seconds (the sentinel looks), never proven."""
    prog = script(tmp_path, """
        import time
        print("waiting", flush=True)
        time.sleep(6)
        print("done", flush=True)
    """)
    result = numdoctor_run("--", PYTHON, prog, env={"NUMDOCTOR_TEST_MARK": mark}, timeout=60)
    assert result.returncode == 0
    assert result.stdout == b"waiting\ndone\n"
    assert result.stderr == b""


def test_keep_running_reports_the_deadlock_and_leaves_the_program_alone(tmp_path, mark):
    target = tmp_path / "report.json"
    env = dict(os.environ, NUMDOCTOR_TEST_MARK=mark)
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    process = subprocess.Popen(
        [PYTHON, "-m", "numdoctor", "run", "--keep-running", "--report", str(target), "--",
         PYTHON, "lock_order.py"], cwd=PROGRAMS, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not target.exists():
            time.sleep(0.2)
        assert target.exists(), "no report within 30 s"
        time.sleep(0.5)
        assert process.poll() is None, "the program was ended despite --keep-running"
        assert report(target)["findings"][0]["code"] == "HANG004"
    finally:
        process.terminate()  # forwarded to the program, which still deadlocks: then kill
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_threads_in_a_lock_cycle_beside_a_main_thread_that_reports_progress_are_not_stopped(
        tmp_path, mark):
    # The program as a whole goes on (its main thread prints), so it is not one that can never
    # continue: without a timeout it runs to its end, with its own exit status.
    prog = script(tmp_path, """
        import sys, threading, time
        a, b = threading.Lock(), threading.Lock()
        ready = threading.Barrier(2)

        def one(first, second):
            with first:
                ready.wait()
                with second:
                    pass

        for pair in ((a, b), (b, a)):
            threading.Thread(target=one, args=pair, daemon=True).start()
        for step in range(12):
            print("step", step, flush=True)
            time.sleep(0.4)
        sys.exit(5)
    """)
    result, data, _ = run_untimed(tmp_path, mark, PYTHON, prog)
    assert result.returncode == 5, result.stderr.decode()
    assert result.stdout.decode().count("step") == 12
    assert data["outcome"]["status"] != "deadlock"
