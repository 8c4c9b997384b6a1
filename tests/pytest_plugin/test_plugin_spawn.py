"""The fork hazard fallback: with a GNU OpenMP pool running in the pytest process a forked
child would deadlock (FORK001), so each test gets a fresh interpreter instead."""

from __future__ import annotations

import re
import textwrap

import pytest


@pytest.mark.slow
def test_with_a_started_openmp_pool_tests_run_in_fresh_interpreters(run_pytest, pytester,
                                                                     omp_library,
                                                                     spin_library):
    pytester.makepyfile(test_openmp=textwrap.dedent(f"""\
        import ctypes

        # collected by the pytest process: a libgomp pool now runs there
        ctypes.CDLL({str(omp_library)!r}).run_parallel()

        def test_parallel_region():
            assert ctypes.CDLL({str(omp_library)!r}).run_parallel() >= 1

        def test_stuck_in_c():
            ctypes.PyDLL({str(spin_library)!r}).spin(ctypes.c_double(30.0))
    """))
    result, seconds = run_pytest("--numdoctor-hang-timeout", "3", timeout=180)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert seconds < 60
    assert re.search(r"ran in: a fresh pytest interpreter \(pid \d+\), not a fork: FORK001: a "
                     r"GNU OpenMP pool runs in the pytest process", out), out
    assert "GNU libgomp: " in out and "pool thread(s) running" in out
    assert re.search(r'File ".*test_openmp\.py", line \d+, in test_stuck_in_c', out), out
    # one fresh interpreter ran both tests: the start-up is paid once, not per test
    assert "tests run in 1 worker process(es): 2 in fresh interpreters" in out
