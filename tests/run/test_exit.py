"""Exit statuses pass through; deaths by signal become 128+N with the signal, the traceback
of the faulting thread and the culprit; worker crashes are found too."""

from __future__ import annotations

import signal

import pytest
from run_helpers import PYTHON, codes, numdoctor_run, report, script


@pytest.mark.parametrize("code", [0, 1, 2, 124, 127, 255])
def test_exit_codes_pass_through_untouched_and_quietly(code, mark):
    result = numdoctor_run("--", "sh", "-c", f"echo out; exit {code}",
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == code
    assert result.stdout == b"out\n"
    assert result.stderr == b""  # a plain non-zero exit is the program's business


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGHUP, signal.SIGBUS,
                                 signal.SIGFPE, signal.SIGUSR1, signal.SIGQUIT])
def test_death_by_signal_exits_128_plus_n_like_a_shell(sig, mark):
    result = numdoctor_run("--", "sh", "-c", f"kill -{sig.name[3:]} $$",
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 128 + sig
    assert sig.name.encode() in result.stderr


def test_segfault_in_ctypes_names_signal_traceback_and_culprit(tmp_path, mark):
    prog = script(tmp_path, """
        import ctypes
        def read_null():
            return ctypes.string_at(0)
        read_null()
    """)
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 139
    assert b"SIGSEGV" in result.stderr and b"SIG001" in result.stderr
    data = report(target)
    assert data["outcome"]["status"] == "crash"
    crash = codes(data)["SIG001"][0]
    evidence = "\n".join(crash["evidence"])
    assert "Fatal Python error: Segmentation fault" in evidence
    assert "read_null (prog.py:4)" in evidence  # the faulting thread's Python frames
    assert "culprit: ctypes [Python standard library]" in evidence
    assert "(main)" in crash["where"]
    dump = data["outcome"]["crash_dumps"]
    assert any("string_at" in text for text in dump.values())


def test_abort_is_sigabrt(tmp_path, mark):
    prog = script(tmp_path, "import os\nos.abort()\n")
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 134
    data = report(target)
    abort = codes(data)["SIG002"][0]
    assert "Fatal Python error: Aborted" in "\n".join(abort["evidence"])


def test_a_crashing_worker_is_named_although_the_main_process_survives(tmp_path, mark):
    """Which worker died, of what, where: BrokenProcessPool alone never says."""
    prog = script(tmp_path, """
        import concurrent.futures, ctypes, multiprocessing

        def task(x):
            if x == 3:
                ctypes.string_at(0)
            return x

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                print(list(pool.map(task, range(5))))
    """)
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 1  # the program's own status, untouched
    data = report(target)
    found = codes(data)
    worker = found["SIG001"][0]
    assert "worker" in worker["where"]
    evidence = "\n".join(worker["evidence"])
    assert "task (prog.py:6)" in evidence
    assert "MSG006" in found  # "A process in the process pool was terminated abruptly"
    assert b"SIG001" in result.stderr


def test_normal_exception_exit_stays_quiet(tmp_path, mark):
    prog = script(tmp_path, "raise SystemExit('bad input')\n")
    result = numdoctor_run("--", PYTHON, prog, env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 1
    assert result.stderr == b"bad input\n"


@pytest.mark.slow
def test_every_exit_code_from_0_to_255_passes_through(mark):
    from concurrent.futures import ThreadPoolExecutor

    def run(code: int) -> tuple[int, int, bytes]:
        result = numdoctor_run("--", "sh", "-c", f"exit {code}",
                               env={"NUMDOCTOR_TEST_MARK": mark})
        return code, result.returncode, result.stderr

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(run, range(256)))
    wrong = [(code, got, err) for code, got, err in outcomes if got != code or err]
    assert not wrong
