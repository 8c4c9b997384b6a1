"""Fixtures for `check`: real subprocesses, real wheels, a real libgomp pool from gcc."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).parent

OMP_SOURCE = r"""
#include <omp.h>
/* Runs one parallel region: afterwards libgomp keeps its pool of threads parked. */
int run_parallel(void) {
    int total = 0;
    #pragma omp parallel reduction(+:total)
    { total += omp_get_thread_num() >= 0; }
    return total;
}
"""


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a fresh interpreter on `code`; numdoctor comes from this checkout."""
    full_env = dict(os.environ)
    full_env.pop("KMP_DUPLICATE_LIB_OK", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("KMP_DUPLICATE_LIB_OK", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "numdoctor", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def check_json(*args: str, env: dict[str, str] | None = None) -> dict:
    result = run_cli("check", "--format", "json", "--fail-on", "never", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def codes(report: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["code"], []).append(finding)
    return found


@pytest.fixture(scope="session")
def omp_library(tmp_path_factory) -> Path:
    """A shared library built with `gcc -fopenmp`: calling it starts a real libgomp pool."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    build = tmp_path_factory.mktemp("omp")
    source = build / "ompwork.c"
    source.write_text(OMP_SOURCE)
    target = build / "libompwork.so"
    subprocess.run(["gcc", "-O1", "-fopenmp", "-shared", "-fPIC", str(source), "-o",
                    str(target)], check=True, capture_output=True)
    return target


@pytest.fixture(scope="session")
def libiomp5() -> Path:
    """Intel's OpenMP runtime from the real `intel-openmp` wheel."""
    try:
        files = importlib.metadata.files("intel-openmp") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the intel-openmp wheel is not installed")
    for file in files:
        if file.name == "libiomp5.so":
            return Path(file.locate()).resolve()
    pytest.skip("intel-openmp is installed but ships no libiomp5.so")


@pytest.fixture(scope="session")
def libomp() -> Path:
    """LLVM's OpenMP runtime (Debian's libomp5 package)."""
    name = ctypes.util.find_library("omp")
    for candidate in ([name] if name else []) + ["/usr/lib/x86_64-linux-gnu/libomp.so.5"]:
        for directory in ("", "/usr/lib/x86_64-linux-gnu/", "/usr/lib/"):
            path = Path(directory + candidate) if directory else Path(candidate)
            if path.is_absolute() and path.exists():
                return path.resolve()
    pytest.skip("LLVM libomp is not installed (Debian package libomp5-14)")


@pytest.fixture(scope="session")
def libmkl_rt() -> Path:
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the mkl wheel is not installed")
    for file in files:
        if file.name.startswith("libmkl_rt.so"):
            return Path(file.locate()).resolve()
    pytest.skip("mkl is installed but ships no libmkl_rt.so")


def module_installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def inprocess_check(setup: str, *, env: dict[str, str] | None = None) -> dict:
    """Run `setup` in a fresh interpreter, then numdoctor.check() in that same process."""
    code = textwrap.dedent(setup) + textwrap.dedent("""
        import json, numdoctor
        from numdoctor.render import report_data
        print("@@REPORT@@" + json.dumps(report_data(numdoctor.check())))
    """)
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = result.stdout.split("@@REPORT@@", 1)[1]
    return json.loads(payload)
