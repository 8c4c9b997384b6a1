"""Fixtures for `numdoctor run` and `numdoctor.isolate()`: real programs that really hang,
crash, fork and print, supervised by the real CLI in a subprocess."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

PYTHON = sys.executable
MARK = "NUMDOCTOR_TEST_MARK"
# numdoctor saves the report of a failure without --report in $TMPDIR: keep those of the
# tests out of the real temporary directory.
_REPORTS = tempfile.mkdtemp(prefix="numdoctor-run-tests-")
atexit.register(shutil.rmtree, _REPORTS, True)


def numdoctor_run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
                  input: bytes | None = None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                  cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """`numdoctor run ARGS...` in a subprocess, as a user would type it."""
    full_env = dict(os.environ, TMPDIR=_REPORTS)
    full_env.pop("KMP_DUPLICATE_LIB_OK", None)
    full_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "numdoctor", "run", *args], env=full_env,
                          timeout=timeout, input=input, stdout=stdout, stderr=stderr, cwd=cwd)


def script(tmp_path: Path, code: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def codes(data: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in data["findings"]:
        found.setdefault(finding["code"], []).append(finding)
    return found


def stacks_text(data: dict) -> str:
    """Every frame of every dumped thread, one per line, for assertions."""
    lines = []
    for process in data["outcome"]["stacks"]:
        for thread in process["threads"]:
            for frame in thread["frames"]:
                lines.append(f"{process['pid']} {frame['kind']} {frame['function']} "
                             f"{frame['file']}:{frame['line']} [{frame['package']}]")
    return "\n".join(lines)


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries `mark` (every process of a test's tree)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read():
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            found.append(int(name))
    return found


@pytest.fixture
def mark() -> str:
    """A unique environment marker for one test's process tree; asserts none outlives it."""
    value = uuid.uuid4().hex
    yield value
    deadline = time.monotonic() + 3
    left = marked_processes(value)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_processes(value)
    for pid in left:  # do not leak into the other tests, but fail this one
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, f"processes of the supervised tree outlived numdoctor: {left}"


def build_c(tmp_path_factory, name: str, source: str, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    build = tmp_path_factory.mktemp(name)
    (build / f"{name}.c").write_text(textwrap.dedent(source))
    target = build / name
    result = subprocess.run(["gcc", "-O1", *flags, str(build / f"{name}.c"), "-o", str(target)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"gcc could not build {name}: {result.stderr.strip()[-300:]}")
    return target


OMP_FORK = r"""
#include <omp.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
/* A parallel region starts libgomp's pool; fork() copies only this thread; the child's
   first parallel region then waits forever for pool threads that do not exist. */
static double work(void) {
    double s = 0;
    #pragma omp parallel for reduction(+:s)
    for (int i = 0; i < 1000000; i++) s += i * 0.5;
    return s;
}
int main(void) {
    printf("parent %g\n", work());
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child %g\n", work());
        fflush(stdout);
        _exit(0);
    }
    printf("forked %d\n", (int)pid);
    fflush(stdout);
    waitpid(pid, NULL, 0);
    return 0;
}
"""


@pytest.fixture(scope="session")
def omp_fork(tmp_path_factory) -> Path:
    """A C program built with `gcc -fopenmp` whose forked child deadlocks in libgomp."""
    return build_c(tmp_path_factory, "ompfork", OMP_FORK, "-fopenmp")


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
