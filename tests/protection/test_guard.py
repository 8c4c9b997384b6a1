"""numdoctor.guard() in real interpreters: a real libgomp pool, a real reload, a real C call
that holds the GIL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_warns_before_forking_over_a_started_openmp_pool(omp_library):
    result = run(f"""
        import ctypes, multiprocessing, warnings, numdoctor
        numdoctor.guard()
        ctypes.CDLL({str(omp_library)!r}).run_parallel()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = multiprocessing.get_context("fork").Process(target=print, args=("child ran",))
            p.start(); p.join(30)
        print([w.category.__name__ for w in caught])
        print(caught[0].message if caught else "")
    """)
    assert result.returncode == 0, result.stderr
    assert "['ForkHazardWarning']" in result.stdout
    assert "FORK001" in result.stdout and "libgomp" in result.stdout
    assert "child ran" in result.stdout  # warn mode still forks


def test_raise_mode_refuses_to_fork(omp_library):
    result = run(f"""
        import ctypes, multiprocessing, numdoctor
        from numdoctor.protection import ForkHazardError
        numdoctor.guard(on_fork="raise")
        ctypes.CDLL({str(omp_library)!r}).run_parallel()
        try:
            multiprocessing.get_context("fork").Process(target=print, args=("child ran",)).start()
        except ForkHazardError as exc:
            print("refused:", exc.finding.code)
    """)
    assert result.returncode == 0, result.stderr
    assert "refused: FORK001" in result.stdout
    assert "child ran" not in result.stdout


def test_no_warning_without_a_started_pool_or_when_closed(omp_library):
    result = run(f"""
        import ctypes, os, warnings, numdoctor
        warnings.simplefilter("error")          # any warning would fail the script
        g = numdoctor.guard(on_fork="raise")
        lib = ctypes.CDLL({str(omp_library)!r})  # loaded, no parallel region yet
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        lib.run_parallel()
        g.close()                               # undone: fork is the plain os.fork again
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("ok", os.fork.__module__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok posix"


def test_reload_of_numpy_is_reported():
    result = run("""
        import importlib, warnings, numpy, numdoctor
        numdoctor.guard()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importlib.reload(numpy)
        print(sorted({w.category.__name__ for w in caught}))
        print([str(w.message) for w in caught if "RELOAD001" in str(w.message)][0])
    """)
    assert result.returncode == 0, result.stderr
    assert "ReloadWarning" in result.stdout
    assert "numpy was reloaded with importlib.reload()" in result.stdout


def test_watchdog_dumps_stacks_while_c_code_holds_the_gil(spin_library):
    result = run(f"""
        import ctypes, numdoctor
        numdoctor.guard(hang_timeout=0.5)
        def stuck_in_c():
            ctypes.PyDLL({str(spin_library)!r}).spin(ctypes.c_double(2.0))
        stuck_in_c()
        print("returned")
    """)
    assert result.returncode == 0, result.stderr
    assert "Timeout (0:00:00.500000)!" in result.stderr
    assert "in stuck_in_c" in result.stderr  # the dump names the function that is stuck
    assert "returned" in result.stdout       # dumping does not kill the program


def test_heartbeats_keep_the_watchdog_quiet():
    result = run("""
        import time, numdoctor
        g = numdoctor.guard(hang_timeout=0.6)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            time.sleep(0.05)
            g.heartbeat()
        g.close()
        time.sleep(1.0)     # closed: the watchdog must not fire any more
        print("done")
    """)
    assert result.returncode == 0, result.stderr
    assert "Timeout" not in result.stderr
    assert result.stdout.strip() == "done"


def test_guard_is_idempotent_and_validates_input():
    result = run("""
        import numdoctor
        a = numdoctor.guard(hang_timeout=30)
        b = numdoctor.guard(hang_timeout=60, on_fork="raise")
        print(a is b, b.hang_timeout, b.on_fork)
        for bad in ({"hang_timeout": -1}, {"on_fork": "explode"}):
            try:
                numdoctor.guard(**bad)
            except ValueError as exc:
                print("ValueError:", exc)
        with numdoctor.guard() as g:
            pass
        print(g.closed)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "True 60 raise"
    assert lines[1].startswith("ValueError: hang_timeout must be a positive")
    assert lines[2].startswith("ValueError: on_fork must be")
    assert lines[3] == "True"


def test_numdoctor_heartbeat_feeds_the_guard():
    result = run("""
        import time, numdoctor
        numdoctor.guard(hang_timeout=0.4)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            time.sleep(0.02)
            numdoctor.heartbeat()
        print("done")
    """)
    assert result.returncode == 0, result.stderr
    assert "Timeout" not in result.stderr
    assert result.stdout.strip() == "done"
