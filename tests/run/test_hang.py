"""Hangs, spinning, timeouts and interrupts: dump every process, diagnose, kill the whole tree.

Each program here really hangs (a real libgomp deadlock after fork, a real sleep, a real busy
loop); the `mark` fixture fails a test if any process of its tree survives numdoctor.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import PYTHON, codes, has_module, numdoctor_run, report, script, stacks_text

pytestmark = pytest.mark.slow


def run_hung(tmp_path, mark, code: str, *options: str, timeout: float = 120):
    target = tmp_path / "report.json"
    started = time.monotonic()
    result = numdoctor_run("--report", str(target), *options, "--", PYTHON,
                           script(tmp_path, code), env={"NUMDOCTOR_TEST_MARK": mark},
                           timeout=timeout)
    return result, report(target), time.monotonic() - started


def test_sleeping_forever_is_a_hang_with_the_stack_and_exit_124(tmp_path, mark):
    result, data, _ = run_hung(tmp_path, mark, """
        import time
        def wait_for_godot():
            time.sleep(3600)
        print("started", flush=True)
        wait_for_godot()
    """, "--hang-timeout", "2")
    assert result.returncode == 124
    assert result.stdout == b"started\n"
    # Not "deadlocked": sleeping, at its line, with how long it has left.
    headline = data["findings"][0]
    assert headline["code"] == "HANG011", headline
    assert "sleeps at prog.py:4" in headline["title"] and "s left" in headline["title"]
    assert "deadlock" not in headline["title"].lower()
    assert b"HANG011" in result.stderr
    assert data["outcome"]["status"] == "hang"
    frames = stacks_text(data)
    assert "wait_for_godot" in frames
    process = data["outcome"]["stacks"][0]
    # py-spy when it can attach (Python and native frames); faulthandler only where it
    # cannot: its signal would cut the sleep short. Either way each thread is shown once.
    assert process["sources"] in (["py-spy"], ["pystack"], ["faulthandler"])
    assert len(process["threads"]) == 1
    if process["native"]:  # native frames: where in libc it sleeps
        assert "native" in frames and "sleep" in frames


def test_a_busy_loop_is_spinning_not_deadlocked(tmp_path, mark):
    result, data, _ = run_hung(tmp_path, mark, """
        print("spinning", flush=True)
        def busy():
            x = 0
            while True:
                x += 1
        busy()
    """, "--hang-timeout", "2")
    assert result.returncode == 124
    found = codes(data)
    assert "HANG002" in found and "HANG001" not in found
    assert data["outcome"]["status"] == "spinning"
    assert "busy (prog.py:" in "\n".join(found["HANG002"][0]["evidence"])


def test_a_silent_infinite_generator_pipeline_is_spinning(tmp_path, mark):
    result, data, _ = run_hung(tmp_path, mark, """
        import itertools
        numbers = itertools.count()
        squares = (n * n for n in numbers)
        negatives = (s for s in squares if s < 0)
        print("pipeline built", flush=True)
        print(next(negatives))  # never comes
    """, "--hang-timeout", "2")
    assert result.returncode == 124
    assert "HANG002" in codes(data)
    assert "<genexpr>" in stacks_text(data)


def test_spin_timeout_zero_leaves_spinning_to_the_hard_timeout(tmp_path, mark):
    result, data, elapsed = run_hung(tmp_path, mark, """
        print("go", flush=True)
        while True:
            pass
    """, "--hang-timeout", "1", "--spin-timeout", "0", "--timeout", "4")
    assert result.returncode == 124
    found = codes(data)
    assert data["outcome"]["status"] == "timeout"
    # the hard timeout is the headline; where the program was busy comes after it
    assert data["findings"][0]["code"] == "HANG003"
    assert "busy at the end" in found["HANG003"][0]["title"]
    # (a sample lands on the `while` or on its body: both are the loop)
    assert re.search(r"at prog\.py:[34]\b", found["HANG002"][0]["title"])
    assert elapsed >= 4


def test_heartbeat_keeps_a_silent_idle_loop_alive(tmp_path, mark):
    target = tmp_path / "report.json"
    prog = script(tmp_path, """
        import time, numdoctor
        end = time.monotonic() + 4
        while time.monotonic() < end:
            time.sleep(0.05)      # idle and silent: only the heartbeat shows progress
            numdoctor.heartbeat()
        print("finished")
    """)
    result = numdoctor_run("--hang-timeout", "1", "--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"finished\n"
    assert report(target)["outcome"]["status"] == "ok"


def test_hard_timeout_while_still_printing(tmp_path, mark):
    result, data, elapsed = run_hung(tmp_path, mark, """
        import time
        while True:
            print("tick", flush=True)
            time.sleep(0.2)
    """, "--hang-timeout", "5", "--timeout", "2")
    assert result.returncode == 124
    timeout = codes(data)["HANG003"][0]
    assert "--timeout 2 s reached" in timeout["evidence"][0]
    assert 2 <= elapsed < 20


def test_forked_child_deadlocked_in_libgomp_is_fork001(omp_fork, tmp_path, mark):
    """A C program: parallel region, fork(), parallel region in the child -> libgomp hang."""
    target = tmp_path / "report.json"
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", str(omp_fork),
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 124
    assert b"parent " in result.stdout and b"forked " in result.stdout
    assert b"child " not in result.stdout  # it never got there
    data = report(target)
    fork = codes(data)["FORK001"][0]
    child = int(result.stdout.split(b"forked ")[1].split()[0])
    assert fork["where"] == f"pid {child}"
    assert fork["severity"] == "error"
    assert "libgomp" in "\n".join(fork["evidence"])


def test_forked_child_deadlocked_in_libgomp_is_found_without_gdb(omp_fork, tmp_path, mark):
    """Without gdb the /proc stack scan still finds libgomp on the child's stack."""
    target = tmp_path / "report.json"
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", str(omp_fork),
                           env={"NUMDOCTOR_TEST_MARK": mark, "NUMDOCTOR_GDB": ""})
    assert result.returncode == 124
    data = report(target)
    assert "FORK001" in codes(data)
    # said once for the report, not once per process
    assert any("gdb is not installed" in n for n in data["outcome"]["notes"])


@pytest.mark.skipif(not has_module("torch"), reason="torch is not installed")
def test_torch_mm_after_fork_deadlocks_under_mkl_in_libgomp(tmp_path, mark):
    result, data, _ = run_hung(tmp_path, mark, """
        import os
        import torch
        a = torch.randn(256, 256)
        torch.mm(a, a)                 # starts torch's OpenMP pool
        print("parent multiplied", flush=True)
        pid = os.fork()
        if pid == 0:
            torch.mm(a, a)             # the child waits for pool threads that do not exist
            os._exit(0)
        print("forked", pid, flush=True)
        os.waitpid(pid, 0)
    """, "--hang-timeout", "2", "--spin-timeout", "60")
    assert result.returncode == 124
    child = int(result.stdout.split(b"forked ")[1].split()[0])
    fork = codes(data)["FORK001"][0]
    assert fork["where"] == f"pid {child}"
    evidence = "\n".join(fork["evidence"])
    assert "libgomp" in evidence and "torch" in evidence
    assert "called from <module> (prog.py:9)" in evidence
    if "py-spy" in data["outcome"]["stacks"][0]["sources"]:
        assert "under a BLAS call: mkl_blas" in evidence
    assert b"FORK001" in result.stderr


def test_escaped_grandchildren_are_killed_too(tmp_path, mark):
    """setsid + double fork: the grandchildren leave the process group and lose their
    parent, and are still found (numdoctor is their subreaper) and killed."""
    pids_file = tmp_path / "pids"
    result, data, _ = run_hung(tmp_path, mark, f"""
        import os, time
        def daemon():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    with open({str(pids_file)!r}, "a") as fh:
                        fh.write(f"{{os.getpid()}}\\n")
                    time.sleep(3600)
                os._exit(0)
        for _ in range(3):
            daemon()
        time.sleep(0.5)
        print("daemons started", flush=True)
        time.sleep(3600)
    """, "--hang-timeout", "2")
    assert result.returncode == 124
    daemons = [int(p) for p in pids_file.read_text().split()]
    assert len(daemons) == 3
    for pid in daemons:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    assert set(daemons) <= set(data["outcome"]["killed"])


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] == b"Z"
    except OSError:
        return True


def test_every_process_of_a_multiprocessing_tree_is_dumped(tmp_path, mark):
    result, data, _ = run_hung(tmp_path, mark, """
        import multiprocessing, time

        def worker_sleeps(n):
            time.sleep(3600)

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=worker_sleeps, args=(i,)) for i in range(3)]
            for p in procs:
                p.start()
            time.sleep(1)
            print("workers started", flush=True)
            for p in procs:
                p.join()
    """, "--hang-timeout", "2")
    assert result.returncode == 124
    stacks = data["outcome"]["stacks"]
    with_worker_frame = [s for s in stacks if "worker_sleeps" in
                         "\n".join(f["function"] for t in s["threads"] for f in t["frames"])]
    assert len(with_worker_frame) == 3
    assert all(s["sources"] for s in with_worker_frame)
    assert len(data["outcome"]["killed"]) >= 4


def test_sigint_is_forwarded_to_the_program(tmp_path, mark):
    prog = script(tmp_path, """
        import signal, sys, time
        def handler(signum, frame):
            print("got SIGINT", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGINT, handler)
        print("ready", flush=True)
        time.sleep(60)
    """)
    process = _start(prog, mark)
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert out == b"got SIGINT\n"
    assert process.returncode == 3
    assert err == b""


def test_a_second_sigint_dumps_and_kills(tmp_path, mark):
    prog = script(tmp_path, """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a program that will not stop
        print("ready", flush=True)
        def stuck():
            time.sleep(3600)
        stuck()
    """)
    target = tmp_path / "report.json"
    process = _start(prog, mark, "--report", str(target))
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert process.poll() is None  # the first one was only forwarded
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert b"stopped by SIGINT" in err
    data = report(target)
    assert data["outcome"]["status"] == "interrupted"
    assert "stuck" in stacks_text(data)


def _start(prog: str, mark: str, *options: str) -> subprocess.Popen:
    env = dict(os.environ, NUMDOCTOR_TEST_MARK=mark)
    return subprocess.Popen([sys.executable, "-m", "numdoctor", "run", *options, "--", PYTHON,
                             prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
