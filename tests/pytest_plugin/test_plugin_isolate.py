"""@pytest.mark.numdoctor_isolate / --numdoctor-isolate: crashes fail one test; everything
else is reported exactly as pytest reports it in-process."""

from __future__ import annotations

import re
import shutil
import textwrap

import pytest


def test_a_segfault_fails_only_the_isolated_test(run_pytest, pytester):
    pytester.makepyfile(test_crash=textwrap.dedent("""\
        import ctypes
        import pytest

        def test_in_process():
            pass

        @pytest.mark.numdoctor_isolate
        def test_segfaults():
            print("printed before the crash")
            ctypes.string_at(0)

        def test_still_runs():
            pass
    """))
    result, _ = run_pytest("-rA")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "numdoctor: the test's process was killed by SIGSEGV (segmentation fault)" in out
    assert "during call" in out
    # the faulting thread's traceback, and the culprit from its innermost Python frame
    assert re.search(r'File ".*test_crash\.py", line 10 in test_segfaults', out), out
    assert "culprit: ctypes [Python standard library]" in out
    assert "ERROR SIG001" in out and "numdoctor explain SIG001" in out
    # what the test printed before it died is kept
    assert "Captured stdout call" in out and "printed before the crash" in out
    assert "PASSED test_crash.py::test_still_runs" in out


def test_openmp_error_15_in_the_output_is_recognised(run_pytest, pytester, libiomp5,
                                                      tmp_path):
    """A real abort of Intel's OpenMP runtime: a second copy of libiomp5 initialises."""
    copy = tmp_path / "second" / "libiomp5.so"
    copy.parent.mkdir()
    shutil.copy(libiomp5, copy)
    pytester.makepyfile(test_iomp=textwrap.dedent(f"""\
        import ctypes, os

        def test_two_intel_openmp_runtimes():
            for path in ({str(libiomp5)!r}, {str(copy)!r}):
                ctypes.CDLL(path, mode=os.RTLD_LOCAL).omp_get_max_threads()
    """))
    result, _ = run_pytest("--numdoctor-isolate")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "killed by SIGABRT" in out
    assert "OMP002" in out and "OMP: Error #15" in out
    assert "numdoctor explain OMP002" in out


OUTCOMES = """\
    import logging, sys, warnings
    import pytest

    class CustomWarning(UserWarning):
        pass

    @pytest.fixture
    def broken_setup():
        raise RuntimeError("setup boom")

    @pytest.fixture
    def broken_teardown():
        yield
        raise RuntimeError("teardown boom")

    def test_pass():
        print("out of a passing test")

    def test_fail():
        print("captured out")
        sys.stderr.write("captured err\\n")
        logging.getLogger("inner").warning("a log record")
        assert 1 + 1 == 3

    def test_setup_error(broken_setup):
        pass

    def test_teardown_error(broken_teardown):
        pass

    @pytest.mark.skip(reason="skipped on purpose")
    def test_skip():
        pass

    def test_skip_inside():
        pytest.skip("skipped inside")

    @pytest.mark.xfail(reason="known bug")
    def test_xfail():
        assert False

    @pytest.mark.xfail(reason="fixed?", strict=True)
    def test_xpass_strict():
        pass

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(n):
        assert n == 1

    def test_warns():
        warnings.warn(CustomWarning("careful"))

    @pytest.mark.filterwarnings("error")
    def test_warning_as_error():
        warnings.warn(UserWarning("now an error"))

    class TestGroup:
        def test_method(self, capsys):
            print("x")
            assert capsys.readouterr().out == "x\\n"
"""


def _comparable(lines: list[str]) -> list[str]:
    """The output without what isolation adds (where each test ran) and without timings."""
    kept, skip = [], 0
    for line in lines:
        if skip:
            skip -= 1
            continue
        if re.fullmatch(r"-+ numdoctor -+", line):
            skip = 1  # and its "ran in ..." line
            continue

        if re.search(r" in [0-9.]+s\b", line):  # the summary line: its width follows the time
            line = re.sub(r" in [0-9.]+s", " in Xs", line).strip("= ")
        kept.append(line)
    return kept


@pytest.mark.slow
def test_outcomes_and_output_are_those_of_an_in_process_run(run_pytest, pytester):
    pytester.makepyfile(test_outcomes=textwrap.dedent(OUTCOMES))
    plain, _ = run_pytest("-rA", "--tb=short")
    forked, _ = run_pytest("-rA", "--tb=short", "--numdoctor-isolate")
    plain.assert_outcomes(passed=5, failed=4, errors=2, skipped=2, xfailed=1, warnings=1)
    assert _comparable(forked.outlines) == _comparable(plain.outlines)
    assert "ran in a forked pytest worker" in forked.stdout.str()
    # A fresh interpreter per test costs a second each: the tests that exercise the most
    # (captured output, logs, errors in fixtures, warnings) are enough.
    select = ("-k", "fail or error or warn")
    plain, _ = run_pytest("-rA", "--tb=short", *select)
    spawned, _ = run_pytest("-rA", "--tb=short", "--numdoctor-isolate",
                            "--numdoctor-start-method", "spawn", *select)
    plain.assert_outcomes(passed=2, failed=3, errors=2, xfailed=1, warnings=1, deselected=6)
    assert _comparable(spawned.outlines) == _comparable(plain.outlines)
    assert "ran in a fresh pytest interpreter" in spawned.stdout.str()


def test_fixtures_of_the_pytest_process_are_torn_down_once_and_there(run_pytest, pytester):
    pytester.makeconftest("""
        import os, pytest

        def log(message):
            with open("fixtures.log", "a") as fh:
                fh.write(f"{os.getpid()} {message}\\n")

        @pytest.fixture(scope="module")
        def resource():
            log("setup")
            yield
            log("teardown")
    """)
    pytester.makepyfile(test_fixtures=textwrap.dedent("""\
        import pytest
        from conftest import log

        def test_in_process(resource):
            log("test in process")

        @pytest.mark.numdoctor_isolate
        def test_isolated(resource):
            log("isolated test")
    """), test_other=textwrap.dedent("""\
        import pytest
        from conftest import log

        @pytest.mark.numdoctor_isolate
        def test_isolated_first(resource):
            log("isolated first")
    """))
    result, _ = run_pytest()
    result.assert_outcomes(passed=3)
    events = [line.split(" ", 1) for line in
              (pytester.path / "fixtures.log").read_text().splitlines()]
    parent = events[0][0]
    # test_fixtures.py: the module fixture lives in the pytest process; the isolated test
    # uses it and does not tear it down; the pytest process does, once.
    # test_other.py: the isolated test's process sets it up and tears it down itself.
    assert [(pid == parent, what) for pid, what in events] == [
        (True, "setup"), (True, "test in process"), (False, "isolated test"),
        (True, "teardown"),
        (False, "setup"), (False, "isolated first"), (False, "teardown"),
    ]


def test_pytest_exit_in_an_isolated_test_stops_the_session(run_pytest, pytester):
    pytester.makepyfile(test_exit=textwrap.dedent("""\
        import pytest

        @pytest.mark.numdoctor_isolate
        def test_exits():
            pytest.exit("stopping here", returncode=3)

        def test_never_runs():
            pass
    """))
    result, _ = run_pytest()
    assert result.ret == 3
    assert "Exit: stopping here" in result.stdout.str()
    result.assert_outcomes()


def test_a_bad_marker_argument_is_a_usage_error(run_pytest, pytester):
    pytester.makepyfile(test_bad=textwrap.dedent("""\
        import pytest

        @pytest.mark.numdoctor_isolate(hang_timeout=-1)
        def test_x():
            pass
    """))
    result, _ = run_pytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("test_bad.py::test_x: @pytest.mark.numdoctor_isolate(hang_timeout=...) must be a "
            "positive number of seconds, not -1") in result.stderr.str()


def test_a_bad_hang_timeout_option_is_a_usage_error(run_pytest, pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result, _ = run_pytest("--numdoctor-hang-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--numdoctor-hang-timeout: 'soon' is not a number of seconds" in result.stderr.str()
