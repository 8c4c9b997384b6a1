"""Fixtures for the binary-compatibility tests: real wheels, real compiled objects.

Wheels are installed with `pip install --no-deps --only-binary=:all: --target` into
`build/test-wheels/` (ignored by git, kept between runs) so the test virtualenv itself is
never changed; tests put those directories on PYTHONPATH of a subprocess. When the package
index cannot be reached the dependent tests are skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / "build" / "test-wheels"

# A real published wheel whose extensions were built with NumPy 1.x headers (cp311,
# manylinux, no compiler needed), and a second real NumPy to shadow the installed one.
NUMPY1_PACKAGE = "Bottleneck==1.3.7"
OTHER_NUMPY = "numpy==2.2.6"


def _pip_target(spec: str) -> Path:
    target = WHEELS / spec.replace("==", "-").lower()
    done = target / ".numdoctor-complete"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
               "--no-compile", "--disable-pip-version-check", "--target", str(target), spec]
    try:
        done_run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        shutil.rmtree(target, ignore_errors=True)
        pytest.skip(f"pip install {spec} timed out (package index unreachable?)")
    if done_run.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        tail = (done_run.stderr or done_run.stdout).strip().splitlines()[-1:]
        pytest.skip(f"cannot install {spec} from the package index: {' '.join(tail)}")
    done.write_text(spec)
    return target


@pytest.fixture(scope="session")
def numpy1_package() -> Path:
    """Directory holding Bottleneck 1.3.7 (built against NumPy 1.x)."""
    return _pip_target(NUMPY1_PACKAGE)


@pytest.fixture(scope="session")
def other_numpy() -> Path:
    """Directory holding NumPy 2.2.6 (C-API 0x13), next to the venv's newer NumPy."""
    return _pip_target(OTHER_NUMPY)


def _gcc() -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    return gcc


@pytest.fixture(scope="session")
def fake_blas(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny shared libraries that both export dgemm_ and dgesdd_ (plus a hidden and an
    undefined BLAS name, which must not count as exported)."""
    gcc = _gcc()
    out = tmp_path_factory.mktemp("fakeblas")
    source = out / "fakeblas.c"
    source.write_text(textwrap.dedent("""
        void dgemm_(void) {}
        int dgesdd_(void) { return 0; }
        __attribute__((visibility("hidden"))) void dgetrf_(void) {}
        extern void dpotrf_(void) __attribute__((weak));
        void uses_dpotrf(void) { if (dpotrf_) dpotrf_(); }
    """))
    libs = []
    for name in ("libfakeblas_a.so", "libfakeblas_b.so"):
        lib = out / name
        subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(source)],
                       check=True, capture_output=True, timeout=120)
        libs.append(lib)
    return libs[0], libs[1]


@pytest.fixture(scope="session")
def newer_api_extension(tmp_path_factory) -> Path:
    """Directory with `newapi`, a C extension built with NumPy 2.4 headers and
    NPY_TARGET_VERSION=NPY_2_4_API_VERSION: it needs the NumPy 2.4 C-API."""
    gcc = _gcc()
    import numpy

    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        pytest.skip(f"Python headers are not installed ({include}/Python.h)")
    if "NPY_2_4_API_VERSION" not in (Path(numpy.get_include()) / "numpy" /
                                     "numpyconfig.h").read_text():
        pytest.skip("the installed NumPy headers predate NumPy 2.4")
    out = tmp_path_factory.mktemp("newapi")
    source = out / "newapi.c"
    source.write_text(textwrap.dedent("""
        #define PY_SSIZE_T_CLEAN
        #include <Python.h>
        #define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
        #include <numpy/arrayobject.h>

        static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "newapi", NULL, -1, NULL};

        PyMODINIT_FUNC PyInit_newapi(void) {
            import_array();
            return PyModule_Create(&module);
        }
    """))
    target = out / f"newapi{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-DNPY_TARGET_VERSION=NPY_2_4_API_VERSION",
                    f"-I{include}", f"-I{numpy.get_include()}", "-o", str(target), str(source)],
                   check=True, capture_output=True, timeout=120)
    return out
