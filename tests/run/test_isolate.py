"""numdoctor.isolate(): results, exceptions, hangs and crashes of a call in a fresh process.

The called functions live in a module written to tmp_path (imported by the isolated process
through sys.path, as multiprocessing's spawn would); each test runs in its own interpreter so
that the pytest process itself never supervises anything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FUNCTIONS = """
import ctypes, os, time

def add(a, b, *, scale=1):
    return (a + b) * scale

def raise_value_error():
    raise ValueError("bad value 42")

def crash():
    ctypes.string_at(0)

def sleep_forever():
    time.sleep(3600)

def spin():
    while True:
        pass

def give_lambda():
    return lambda: 1

def exit_without_result():
    os._exit(7)

def pid():
    return os.getpid()
"""


def run_isolated(tmp_path, body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    (tmp_path / "funcs.py").write_text(FUNCTIONS)
    code = "import numdoctor, funcs, os, sys\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, env=_env(tmp_path))


def _env(tmp_path):
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_returns_the_result_of_a_call_in_another_process(tmp_path):
    result = run_isolated(tmp_path, """
        print(numdoctor.isolate(funcs.add, 2, 3, scale=10))
        print(numdoctor.isolate(funcs.pid) != os.getpid())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50", "True"]


def test_reraises_the_functions_exception_with_its_remote_traceback(tmp_path):
    result = run_isolated(tmp_path, """
        try:
            numdoctor.isolate(funcs.raise_value_error)
        except ValueError as exc:
            print(type(exc).__name__, exc)
            print("raise_value_error" in str(exc.__cause__))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ValueError bad value 42", "True"]


def test_a_crash_raises_crash_error_with_signal_stack_and_culprit(tmp_path):
    result = run_isolated(tmp_path, """
        try:
            numdoctor.isolate(funcs.crash)
        except numdoctor.CrashError as exc:
            print(exc.signal, exc.signal_name, exc.exit_code)
            print([f.code for f in exc.findings])
            print(exc.culprit)
            print(any("string_at" in text for text in exc.crash_dumps.values()))
            print("SIG001" in str(exc))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "11 SIGSEGV 139"
    assert "SIG001" in lines[1]
    assert lines[2].startswith("ctypes [Python standard library]")
    assert lines[3:] == ["True", "True"]


def test_an_exit_without_a_result_is_a_crash_error(tmp_path):
    result = run_isolated(tmp_path, """
        try:
            numdoctor.isolate(funcs.exit_without_result)
        except numdoctor.CrashError as exc:
            print(exc.signal, exc.exit_code, exc.status)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "7", "exit"]


@pytest.mark.slow
def test_a_hang_raises_hang_error_with_the_stacks(tmp_path):
    result = run_isolated(tmp_path, """
        import time
        started = time.monotonic()
        try:
            numdoctor.isolate(funcs.sleep_forever, hang_timeout=1.5)
        except numdoctor.HangError as exc:
            print(exc.kind, round(time.monotonic() - started) < 20)
            frames = [f["function"] for s in exc.stacks for t in s["threads"]
                      for f in t["frames"]]
            print("sleep_forever" in frames)
            print([f.code for f in exc.findings])
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["hang True", "True"]
    assert lines[2].startswith("['HANG011'"), lines[2]  # it sleeps: said first


@pytest.mark.slow
def test_a_timeout_raises_hang_error(tmp_path):
    result = run_isolated(tmp_path, """
        try:
            numdoctor.isolate(funcs.spin, timeout=2, spin_timeout=0)
        except numdoctor.HangError as exc:
            print(exc.kind, [f.code for f in exc.findings])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("timeout ['HANG003'")


def test_unpicklable_function_argument_or_result_is_a_clear_type_error(tmp_path):
    result = run_isolated(tmp_path, """
        import threading
        for call in (lambda: numdoctor.isolate(lambda: 1),
                     lambda: numdoctor.isolate(funcs.add, threading.Lock(), 1),
                     lambda: numdoctor.isolate(funcs.add, 1, b=threading.Lock()),
                     lambda: numdoctor.isolate(funcs.give_lambda)):
            try:
                call()
            except TypeError as exc:
                print(str(exc).split(" cannot be pickled")[0])
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("numdoctor.isolate: the function '<lambda>")
    assert lines[0].endswith("(it must be importable: defined at the top level of a module, "
                             "not a lambda or a nested function)")
    assert lines[1:] == ["numdoctor.isolate: positional argument 0 (lock)",
                         "numdoctor.isolate: keyword argument 'b' (lock)",
                         "numdoctor.isolate: the function returned a function, which"]


def test_functions_of_the_main_script_work_like_with_multiprocessing_spawn(tmp_path):
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent("""
        import numdoctor
        print("imported")            # re-imported as __mp_main__ in the isolated process

        def square(x):
            return x * x

        if __name__ == "__main__":
            print(numdoctor.isolate(square, 7))
    """))
    result = subprocess.run([sys.executable, str(main)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["imported", "imported", "49"]
