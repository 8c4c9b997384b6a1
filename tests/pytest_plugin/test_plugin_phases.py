"""A test that hangs or crashes is reported in the phase it was in, as pytest would report an
error there: never as passed. The session goes on with the next test, and nothing it started
is left running."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
import xml.etree.ElementTree as ET

import pytest
from plugin_helpers import running

PHASES = """\
    import ctypes, os, pathlib, subprocess, time
    import pytest

    def remember(name):
        child = subprocess.Popen(["sleep", "300"])
        pathlib.Path(f"{name}.pid").write_text(str(child.pid))

    @pytest.fixture
    def hangs_in_setup():
        remember("setup_hang")
        ctypes.PyDLL(None).sleep(60)  # holds the GIL
        yield

    @pytest.fixture
    def hangs_in_teardown():
        yield
        remember("teardown_hang")
        time.sleep(60)

    @pytest.fixture
    def crashes_in_setup():
        ctypes.string_at(0)
        yield

    @pytest.fixture
    def crashes_in_teardown():
        yield
        os.abort()

    def test_setup_hang(hangs_in_setup):
        pass

    def test_call_hang():
        remember("call_hang")
        ctypes.PyDLL(None).sleep(60)

    def test_teardown_hang(hangs_in_teardown):
        pass

    def test_setup_crash(crashes_in_setup):
        pass

    def test_call_crash():
        ctypes.string_at(0)

    def test_teardown_crash(crashes_in_teardown):
        pass

    def test_after():
        pass
"""


@pytest.mark.slow
def test_hangs_and_crashes_are_reported_in_their_phase(run_pytest, pytester):
    pytester.makepyfile(test_phases=textwrap.dedent(PHASES))
    result, seconds = run_pytest("--numdoctor-hang-timeout", "2", "--junitxml", "junit.xml",
                                 "-rA", timeout=120)
    # pytest's own rules: an error in setup is an error; in the call a failure; in teardown
    # the test passed and its teardown is an error.
    result.assert_outcomes(passed=3, failed=2, errors=4)
    out = result.stdout.str()
    assert seconds < 60, f"three 2 s hangs took {seconds:.0f} s"
    for name, phase in (("setup_hang", "setup"), ("teardown_hang", "teardown"),
                        ("setup_crash", "setup"), ("teardown_crash", "teardown")):
        assert f"ERROR at {phase} of test_{name}" in out, out
    assert "stopped during setup" in out and "stopped during teardown" in out
    assert re.search(r"_+ test_call_hang _+\nnumdoctor: no result within 2 s "
                     r"\(--numdoctor-hang-timeout\); stopped during call", out), out
    assert re.search(r"test_call_crash .*\n.*\n?numdoctor: the test's process was killed by "
                     r"SIGSEGV", out) or "crashed during call" in out, out
    assert "killed by SIGABRT" in out and "during teardown" in out
    assert "PASSED test_phases.py::test_after" in out
    # The hung tests' line is named once in the stacks, the waiting one found by py-spy.
    assert re.search(r'File ".*test_phases\.py", line 35, in test_call_hang', out), out

    junit = ET.parse(pytester.path / "junit.xml").getroot()
    kinds: dict[str, list[str]] = {}
    for case in junit.iter("testcase"):
        kinds[case.get("name", "")] = [child.tag for child in case
                                       if child.tag in ("failure", "error", "skipped")]
    assert kinds == {
        "test_setup_hang": ["error"], "test_call_hang": ["failure"],
        "test_teardown_hang": ["error"], "test_setup_crash": ["error"],
        "test_call_crash": ["failure"], "test_teardown_crash": ["error"],
        "test_after": [],
    }, kinds
    # Nothing the hung tests started runs on.
    pids = {p.stem: int(p.read_text()) for p in pytester.path.glob("*.pid")}
    assert set(pids) == {"setup_hang", "call_hang", "teardown_hang"}
    assert [name for name, pid in pids.items() if running(pid)] == []


MODULE_FIXTURE = """\
    import os, pathlib, time
    import pytest

    @pytest.fixture(scope="module")
    def server():
        with open("setups.log", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        yield "server"

    def test_first(server):
        pass

    def test_hangs(server):
        time.sleep(60)

    def test_after_the_hang(server):
        assert server == "server"

    def test_last(server):
        pass
"""


@pytest.mark.slow
def test_a_module_fixture_is_set_up_again_in_the_replacement_worker(run_pytest, pytester):
    pytester.makepyfile(test_module=textwrap.dedent(MODULE_FIXTURE))
    result, _ = run_pytest("--numdoctor-hang-timeout", "2")
    result.assert_outcomes(passed=3, failed=1)
    setups = (pytester.path / "setups.log").read_text().split()
    # once in the first worker, once again in the one that replaced it
    assert len(setups) == 2 and setups[0] != setups[1]
    out = result.stdout.str()
    assert "the worker was replaced 1 time(s), after: test_module.py::test_hangs hang" in out
    assert "Fixtures of session and module scope were set up again" in out


def test_exitfirst_stops_at_the_first_failure_and_tears_down_there(run_pytest, pytester):
    pytester.makepyfile(test_x=textwrap.dedent("""\
        import pytest

        @pytest.fixture(scope="module")
        def resource():
            yield
            print("module teardown ran")
            raise RuntimeError("teardown of the module fixture")

        def test_a(resource):
            pass

        def test_b(resource):
            assert False

        def test_c(resource):
            pass
    """))
    plain, _ = run_pytest("-x", "-rA")
    watched, _ = run_pytest("-x", "-rA", "--numdoctor-hang-timeout", "30")
    # as plain pytest: test_c never runs, and the module fixture's teardown error belongs to
    # test_b, the test where the session stopped
    plain.assert_outcomes(passed=1, failed=1, errors=1)
    watched.assert_outcomes(passed=1, failed=1, errors=1)
    assert "ERROR at teardown of test_b" in watched.stdout.str()
    assert watched.ret == plain.ret


def test_last_failed_and_selections_give_what_plain_pytest_gives(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    slowish: a marker for selection\n")
    pytester.makepyfile(test_sel=textwrap.dedent("""\
        import pytest

        def test_ok():
            pass

        def test_broken():
            assert False

        @pytest.mark.slowish
        def test_marked():
            pass
    """))
    watched = ("--numdoctor-hang-timeout", "30")
    for selection in ((), ("--lf",), ("-m", "slowish"), ("-k", "ok")):
        # each run keeps the cache: --lf reads what the run before wrote
        plain = pytester.runpytest_subprocess(*selection)
        ours = pytester.runpytest_subprocess(*selection, *watched)
        assert ours.parseoutcomes() == plain.parseoutcomes(), selection
        assert ours.ret == plain.ret, selection


@pytest.mark.slow
def test_each_xdist_worker_is_watched(run_pytest, pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_dist=textwrap.dedent("""\
        import ctypes
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_many(n):
            pass

        def test_stuck():
            ctypes.PyDLL(None).sleep(60)
    """))
    result, seconds = run_pytest("-n", "2", "--numdoctor-hang-timeout", "3", timeout=120)
    result.assert_outcomes(passed=6, failed=1)
    assert seconds < 60
    out = result.stdout.str()
    assert "no result within 3 s (--numdoctor-hang-timeout); stopped during call" in out
    assert re.search(r'File ".*test_dist\.py", line \d+, in test_stuck', out), out


def test_under_xdist_each_test_runs_once_where_xdist_sent_it(run_pytest, pytester, tmp_path):
    """xdist's loop, not the order of the items, picks each worker's next test: a worker
    must not run tests ahead that xdist gave to the other one."""
    pytest.importorskip("xdist")
    ran = tmp_path / "ran.txt"
    pytester.makepyfile(test_spread=textwrap.dedent(f"""\
        import os
        import pytest

        @pytest.mark.parametrize("n", range(40))
        def test_quick(n):
            with open({str(ran)!r}, "a") as fh:
                fh.write(f"{{n}} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
    """))
    result, _ = run_pytest("-n", "2", "--numdoctor-hang-timeout", "30", timeout=120)
    result.assert_outcomes(passed=40)
    runs = [line.split() for line in ran.read_text().splitlines()]
    assert sorted(int(n) for n, _ in runs) == list(range(40)), runs
    assert {xdist_worker for _, xdist_worker in runs} == {"gw0", "gw1"}


@pytest.mark.slow
def test_where_ptrace_is_denied_the_report_says_so_once_and_keeps_python_stacks(
        run_pytest, pytester, tmp_path, monkeypatch):
    """py-spy run as another user cannot attach: a real EPERM from ptrace, as in a container
    without CAP_SYS_PTRACE."""
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(os.sys.executable),
                                                    "py-spy")
    setpriv = shutil.which("setpriv")
    if os.getuid() != 0 or setpriv is None or not os.path.exists(py_spy):
        pytest.skip("needs root, setpriv and py-spy to run py-spy as another user")
    wrapper = tmp_path / "py-spy-as-nobody"
    wrapper.write_text(f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 "
                       f"--clear-groups {py_spy} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("NUMDOCTOR_PY_SPY", str(wrapper))
    monkeypatch.setenv("NUMDOCTOR_PYSTACK", "0")
    pytester.makepyfile(test_denied=textwrap.dedent("""\
        import time

        def test_waits():
            time.sleep(60)
    """))
    result, _ = run_pytest("--numdoctor-hang-timeout", "2")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert out.count("ptrace was denied") == 1, out
    assert "SYS_PTRACE" in out
    assert re.search(r"Stacks of pid \d+ \(faulthandler\)", out), out
    assert len(re.findall(r'File ".*test_denied\.py", line 4, in test_waits', out)) == 1, out
