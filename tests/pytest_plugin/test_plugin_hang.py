"""--numdoctor-hang-timeout on real hangs: C code holding the GIL, processes left behind."""

from __future__ import annotations

import re
import textwrap

import pytest
from plugin_helpers import running

from numdoctor.core.stacks.pyspy import find_py_spy

STUCK_IN_C = """\
    import ctypes

    def test_before():
        pass

    def test_stuck_in_c():
        ctypes.PyDLL({lib!r}).spin(ctypes.c_double({seconds}))  # holds the GIL

    def test_after():
        pass
"""


@pytest.mark.slow
def test_a_test_stuck_in_c_holding_the_gil_is_failed_with_its_stacks(run_pytest, pytester,
                                                                      spin_library):
    path = pytester.makepyfile(test_stuck=textwrap.dedent(
        STUCK_IN_C.format(lib=str(spin_library), seconds=30.0)))
    line = path.read_text().splitlines().index(next(
        text for text in path.read_text().splitlines() if ".spin(" in text)) + 1
    result, seconds = run_pytest("--numdoctor-hang-timeout", "2")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert seconds < 20, f"the 30 s spin was not cut short: {seconds:.1f} s"
    assert "no result within 2 s (--numdoctor-hang-timeout); stopped during call" in out
    assert "ran in: a forked pytest worker" in out
    # The C loop keeps a CPU busy: the headline says so, at the test's line.
    assert re.search(rf"ERROR HANG002 .*is busy \(\d+% CPU\) at test_stuck\.py:{line}", out), out
    # The stacks, taken while the C call still held the GIL, name the test and its line once,
    # with the native frames of the C library, and none of pytest's own frames.
    assert len(re.findall(rf'File ".*test_stuck\.py", line {line}, in test_stuck_in_c',
                          out)) == 1, out
    assert find_py_spy(), "py-spy is a dependency of numdoctor"
    assert re.search(r"Stacks of pid \d+ \(py-spy\)", out), out
    assert "[holds the GIL]" in out
    assert "_pytest" not in out.split("Stacks of pid", 1)[1].split("numdoctor ---", 1)[0]
    assert "FAILED test_stuck.py::test_stuck_in_c - no result within 2 s" in out
    # the session went on, in a new worker
    assert "the worker was replaced 1 time(s)" in out


@pytest.mark.slow
def test_pytest_timeout_signal_method_waits_for_the_c_call(run_pytest, pytester,
                                                           spin_library):
    """The reason the plugin exists: SIGALRM's Python handler only runs once C returns."""
    pytester.makepyfile(test_stuck=textwrap.dedent(
        STUCK_IN_C.format(lib=str(spin_library), seconds=8.0)))
    result, seconds = run_pytest("-p", "timeout", "--timeout", "2", "--timeout-method",
                                 "signal", "-k", "stuck_in_c", timeout=60)
    result.assert_outcomes(failed=1, deselected=2)
    assert "Timeout (>2.0s) from pytest-timeout" in result.stdout.str()
    assert seconds >= 7.5, f"pytest-timeout interrupted the C call after {seconds:.1f} s"


@pytest.mark.slow
def test_a_hanging_test_leaves_no_process_behind(run_pytest, pytester):
    pytester.makepyfile(test_leaks=textwrap.dedent("""
        import os, pathlib, subprocess, time

        def test_hangs_with_children():
            child = subprocess.Popen(["sleep", "300"])
            pathlib.Path("sleep.pid").write_text(str(child.pid))
            # a daemon: double fork and setsid leave both the parent and the session
            read, write = os.pipe()
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(write, str(os.getpid()).encode())
                    time.sleep(300)
                os._exit(0)
            pathlib.Path("daemon.pid").write_text(os.read(read, 32).decode())
            time.sleep(300)

        def test_passes_but_leaves_a_child():
            child = subprocess.Popen(["sleep", "300"])
            pathlib.Path("leftover.pid").write_text(str(child.pid))
    """))
    result, _seconds = run_pytest("--numdoctor-hang-timeout", "2")
    result.assert_outcomes(passed=1, failed=1)
    pids = {name: int((pytester.path / f"{name}.pid").read_text())
            for name in ("sleep", "daemon", "leftover")}
    assert [name for name, pid in pids.items() if running(pid)] == []
    out = result.stdout.str()
    killed = re.search(r"^killed: (.*)$", out, re.M)
    assert killed, out
    assert f"{pids['sleep']} (sleep 300)" in killed.group(1)
    assert f"{pids['daemon']} (" in killed.group(1)
    assert "(the test's worker)" in killed.group(1)
    assert re.search(rf"killed 1 process\(es\) test_leaks.py::test_passes_but_leaves_a_child "
                     rf"left running: {pids['leftover']} \(sleep 300\)", out), out


def test_a_hang_among_many_quick_tests_is_pinned_on_the_test_that_hung(run_pytest, pytester,
                                                                       tmp_path):
    """The worker runs quick tests ahead of the pytest process's reading of their reports:
    the hang must still be the hung test's, and every quick test's report must arrive."""
    pytester.makepyfile(test_many=textwrap.dedent("""\
        import ctypes
        import pytest

        @pytest.mark.parametrize("n", range(150))
        def test_before(n):
            pass

        def test_stuck():
            ctypes.PyDLL(None).sleep(60)  # holds the GIL: the worker cannot say a word

        @pytest.mark.parametrize("n", range(20))
        def test_after(n):
            pass
    """))
    junit = tmp_path / "junit.xml"
    result, seconds = run_pytest("--numdoctor-hang-timeout", "2", f"--junitxml={junit}")
    result.assert_outcomes(passed=170, failed=1)
    assert seconds < 30
    out = result.stdout.str()
    assert "FAILED test_many.py::test_stuck - no result within 2 s" in out
    assert re.search(r'File ".*test_many\.py", line \d+, in test_stuck', out), out
    xml = junit.read_text()
    assert xml.count("<testcase ") == 171
    assert xml.count("<failure ") == 1
