"""Fixtures shared by every test folder: real native libraries, built or found once."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import shutil
import subprocess
from pathlib import Path

import pytest

# pytest's own fixture for running real pytest sessions (tests/pytest_plugin); pytest only
# accepts pytest_plugins in the top-level conftest.
pytest_plugins = ["pytester"]


_SESSION_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """numdoctor's on-disk cache goes to a directory of this session, shared by every
    numdoctor the tests start, not to the user's ~/.cache (a test may set its own).

    The signals a terminal sends are given back their default handling: a suite started in
    the background (`cmd &` ignores SIGINT and SIGQUIT) or under nohup (SIGHUP) would pass
    "ignored" down to every program the tests supervise, and the signal tests would test
    the launcher instead of numdoctor.
    """
    import os
    import signal
    import tempfile

    if "NUMDOCTOR_CACHE_DIR" not in os.environ:
        os.environ["NUMDOCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="numdoctor-test-cache-")
        _SESSION_CACHE.append(os.environ["NUMDOCTOR_CACHE_DIR"])
    for name in ("SIGHUP", "SIGQUIT"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    import os

    for directory in _SESSION_CACHE:
        shutil.rmtree(directory, ignore_errors=True)
        if os.environ.get("NUMDOCTOR_CACHE_DIR") == directory:
            del os.environ["NUMDOCTOR_CACHE_DIR"]
    _SESSION_CACHE.clear()

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

SPIN_SOURCE = r"""
#include <time.h>
#include <unistd.h>
/* Busy-waits for `seconds` without returning to Python (called through ctypes.PyDLL it
   keeps the GIL the whole time). */
void spin(double seconds) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do { clock_gettime(CLOCK_MONOTONIC, &b); }
    while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < seconds);
}
/* Sleeps in C. */
void sleep_seconds(unsigned int seconds) { sleep(seconds); }
"""


def _build(tmp_path_factory, name: str, source: str, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    build = tmp_path_factory.mktemp(name)
    (build / f"{name}.c").write_text(source)
    target = build / f"lib{name}.so"
    subprocess.run(["gcc", "-O1", *flags, "-shared", "-fPIC", str(build / f"{name}.c"), "-o",
                    str(target)], check=True, capture_output=True)
    return target


@pytest.fixture(scope="session")
def omp_library(tmp_path_factory) -> Path:
    """A shared library built with `gcc -fopenmp`: calling it starts a real libgomp pool."""
    return _build(tmp_path_factory, "ompwork", OMP_SOURCE, "-fopenmp")


@pytest.fixture(scope="session")
def spin_library(tmp_path_factory) -> Path:
    """`spin(seconds)` and `sleep_seconds(n)`: C code that does not return to Python."""
    return _build(tmp_path_factory, "spin", SPIN_SOURCE)


def _wheel_file(distribution: str, prefix: str) -> Path:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the {distribution} wheel is not installed")
    for file in files:
        if file.name.startswith(prefix):
            return Path(file.locate()).resolve()
    pytest.skip(f"{distribution} is installed but ships no {prefix}*")


@pytest.fixture(scope="session")
def libiomp5() -> Path:
    """Intel's OpenMP runtime from the real `intel-openmp` wheel."""
    return _wheel_file("intel-openmp", "libiomp5.so")


@pytest.fixture(scope="session")
def libmkl_rt() -> Path:
    """MKL's single dynamic library from the real `mkl` wheel."""
    return _wheel_file("mkl", "libmkl_rt.so")


@pytest.fixture(scope="session")
def libomp() -> Path:
    """LLVM's OpenMP runtime (Debian's libomp5 package)."""
    candidates = [ctypes.util.find_library("omp") or "", "libomp.so.5"]
    for name in candidates:
        for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
            path = Path(directory, name)
            if name and path.exists():
                return path.resolve()
    pytest.skip("LLVM libomp is not installed (Debian package libomp5-14)")
