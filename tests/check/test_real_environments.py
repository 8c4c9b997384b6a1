"""`numdoctor check` in the environments users really have (built by tests/check/conftest.py):
a Debian system Python with apt's NumPy and SciPy, a venv on it with pip's torch, pip --user,
a --target directory near the root. For each: a report, not a traceback; no false BLAS or
OpenMP finding; the implementation that serves the calls and the package that owns it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from checkutil import codes

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def check(python: str, *args: str, env: dict[str, str] | None = None,
          cwd: str | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "KMP_DUPLICATE_LIB_OK", "PYTHONUSERBASE")}
    environment["PYTHONPATH"] = str(REPO / "src")
    environment.update(env or {})
    result = subprocess.run([python, "-m", "numdoctor", "check", "--format", "json",
                             "--fail-on", "never", *args], capture_output=True, text=True,
                            env=environment, timeout=300, cwd=cwd)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def libraries(report: dict, vendor: str | None = None) -> list[dict]:
    return [lib for lib in report["snapshot"]["libraries"]
            if vendor is None or lib["vendor"] == vendor]


def framework(report: dict, name: str) -> dict:
    return next(f for f in report["snapshot"]["frameworks"] if f["name"] == name)


def no_collection_errors(report: dict) -> None:
    assert report["snapshot"]["collection_errors"] == [], report["snapshot"]["collection_errors"]
    assert "ND001" not in codes(report)


def debian_openblas(report: dict) -> dict:
    """The one OpenBLAS implementation of apt's packages, checked for its interfaces."""
    (openblas,) = [lib for lib in libraries(report, "openblas") if not lib["implementation"]
                   and lib["distribution"].startswith("deb:")]
    assert openblas["distribution"].startswith("deb:libopenblas0"), openblas
    interfaces = [lib for lib in libraries(report) if lib["implementation"] == openblas["path"]]
    names = {os.path.basename(lib["path"]) for lib in interfaces}
    assert {"libblas.so.3", "liblapack.so.3"} <= names, names
    alternatives = {a for lib in interfaces for a in lib["alternatives"]}
    assert any(a.startswith("libblas.so.3") for a in alternatives), alternatives
    return openblas


def test_debian_system_python_has_one_openblas_and_apt_owners(debian_python):
    report = check(debian_python, env={"PYTHONNOUSERSITE": "1"})
    no_collection_errors(report)
    found = codes(report)
    assert "BLAS001" not in found and "OMP001" not in found and "OMP002" not in found, found
    openblas = debian_openblas(report)
    assert openblas["num_threads"] and openblas["version"].startswith("0.")
    for name in ("numpy", "scipy"):
        fw = framework(report, name)
        assert fw["distribution"] == f"deb:python3-{name}", fw
        assert fw["blas_libraries"] == [openblas["path"]], fw
    # The default import set reaches scipy.linalg, which is what loads SciPy's BLAS.
    assert [a["module"] for a in report["snapshot"]["imports"]][:3] == \
        ["numpy", "scipy", "scipy.linalg"]


def test_debian_text_report_names_the_implementation_and_the_packages(debian_python):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "KMP_DUPLICATE_LIB_OK", "PYTHONUSERBASE")}
    env.update(PYTHONPATH=str(REPO / "src"), PYTHONNOUSERSITE="1", COLUMNS="200")
    result = subprocess.run([debian_python, "-m", "numdoctor", "check", "--import",
                             "numpy,scipy.linalg"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "↳ interface" in out and "libopenblas0-pthread" in out
    assert "python3-numpy (apt)" in out and "python3-scipy (apt)" in out
    assert "via" in out and "No problems found." in out


def test_system_site_venv_with_pip_torch(debian_venv_with_torch):
    report = check(debian_venv_with_torch, "--import", "numpy,scipy.linalg,torch")
    no_collection_errors(report)
    found = codes(report)
    assert "OMP001" not in found and "OMP002" not in found, found
    openblas = debian_openblas(report)
    torch = framework(report, "torch")
    assert torch["distribution"] == "torch"
    pools = {p["name"]: p for p in torch["pools"]}
    assert pools["intra-op"]["size"] and pools["inter-op"]["size"]
    # torch's intra-op pool is its own libgomp's pool: the same threads, named once.
    gomp = [lib for lib in libraries(report, "gnu") if lib["distribution"] == "torch"]
    assert gomp and pools["intra-op"]["runs_on"] == gomp[0]["path"]
    # Two BLAS implementations, really: the system's OpenBLAS and torch's static MKL; the
    # interface libraries are not counted.
    if "BLAS001" in found:
        blas = found["BLAS001"][0]
        assert blas["title"].startswith("2 BLAS implementations"), blas["title"]
        assert "libopenblas0-pthread (apt)" in blas["fix"] and ".so" not in blas["fix"]
        assert any(line.startswith("OpenBLAS: " + openblas["path"]) for line in blas["evidence"])
    assert framework(report, "numpy")["distribution"] == "deb:python3-numpy"


def test_pip_user_numpy_over_apt_scipy(debian_python, debian_user_site):
    report = check(debian_python, "--import", "numpy,scipy.linalg",
                   env={"PYTHONUSERBASE": str(debian_user_site)})
    no_collection_errors(report)
    found = codes(report)
    numpy = framework(report, "numpy")
    assert numpy["distribution"] == "numpy" and numpy["version"] == "1.26.4"
    assert str(debian_user_site) in numpy["path"]
    openblas = debian_openblas(report)
    wheel = [lib for lib in libraries(report, "openblas")
             if lib["distribution"] == "numpy" and not lib["implementation"]]
    assert len(wheel) == 1 and numpy["blas_libraries"] == [wheel[0]["path"]]
    assert framework(report, "scipy")["blas_libraries"] == [openblas["path"]]
    # Two implementations (NumPy's wheel's and the system's), never four files.
    blas = found["BLAS001"][0]
    assert blas["title"].startswith("2 BLAS implementations"), blas["title"]
    assert "OMP002" not in found


def test_shallow_target_directory_on_pythonpath(bare_python, shallow_target, tmp_path):
    assert shallow_target.count("/") == 2  # /tmp/nd-target-XXXX, as deep as /opt/python
    report = check(bare_python, env={"PYTHONPATH": f"{REPO / 'src'}:{shallow_target}"},
                   cwd=str(tmp_path))
    no_collection_errors(report)
    found = codes(report)
    assert not {"OMP001", "OMP002", "IMP001", "IMP003"} & set(found), found
    for name in ("numpy", "scipy"):
        fw = framework(report, name)
        assert fw["distribution"] == name and fw["path"].startswith(shallow_target + "/")
        (served,) = fw["blas_libraries"]
        lib = next(lib for lib in libraries(report) if lib["path"] == served)
        assert lib["vendor"] == "openblas" and lib["distribution"] == name
    # The default check reports NumPy's and SciPy's OpenBLAS: two pip wheels, two pools.
    assert found["BLAS001"][0]["title"] == "2 BLAS implementations are loaded (openblas)"
