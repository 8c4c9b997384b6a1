"""Real environments that `check` must describe right, built once and kept between runs.

- the Debian/Ubuntu system Python with apt's python3-numpy and python3-scipy (OpenBLAS
  chosen through update-alternatives): scripts/test.sh installs them where it runs as root
  with apt-get; elsewhere the tests that need them skip, saying so;
- a virtual environment with --system-site-packages on that Python, with pip's torch;
- `pip install --user` on that Python;
- a `pip install --target` directory near the file-system root (AWS Lambda's /opt/python),
  on PYTHONPATH of an interpreter that has nothing else.

Environments are built under build/test-envs/ (ignored by git) and marked complete, so a
second session reuses them; the --target directory is copied to /tmp per session because
its depth is the point.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "build" / "test-envs"
SYSTEM_PYTHON = "/usr/bin/python3"
TORCH = "torch==2.13.0"  # the local CPU wheel; a range could pull a CUDA build
NUMDOCTOR_DEPS = ("threadpoolctl", "psutil", "rich", "packaging")
APT_HINT = ("scripts/test.sh installs them with apt-get where it runs as root on Debian or "
            "Ubuntu")


def _run(command: list[str], *, timeout: float = 900, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _build(name: str, steps: list[list[str]], *, env: dict[str, str] | None = None) -> Path:
    """Run `steps` once to build build/test-envs/<name>; skip (saying why) if one fails."""
    target = ENVS / name
    done = target / ".numdoctor-complete"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for step in steps:
        command = [part.replace("{target}", str(target)) for part in step]
        try:
            result = _run(command, env=env)
        except subprocess.TimeoutExpired:
            shutil.rmtree(target, ignore_errors=True)
            pytest.skip(f"building the {name} environment timed out: {' '.join(command)}")
        if result.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
            pytest.skip(f"cannot build the {name} environment ({' '.join(command)}): {tail}")
    done.write_text(json.dumps(steps))
    return target


def _system_python_has(*modules: str) -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = "import " + ", ".join(modules)
    return _run([SYSTEM_PYTHON, "-s", "-c", probe], timeout=120).returncode == 0


def _dpkg_owns(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    done = _run(["dpkg-query", "-W", "-f=${Status}", package], timeout=60)
    return done.returncode == 0 and "install ok installed" in done.stdout


@pytest.fixture(scope="session")
def debian_python() -> str:
    """/usr/bin/python3 with apt's numpy and scipy and numdoctor's own dependencies."""
    if not (_dpkg_owns("python3-numpy") and _dpkg_owns("python3-scipy")):
        pytest.skip(f"apt's python3-numpy and python3-scipy are not installed ({APT_HINT})")
    if not _system_python_has("numpy", "scipy.linalg", *NUMDOCTOR_DEPS):
        pytest.skip(f"{SYSTEM_PYTHON} cannot import numpy, scipy and numdoctor's "
                    f"dependencies {', '.join(NUMDOCTOR_DEPS)} ({APT_HINT})")
    return SYSTEM_PYTHON


@pytest.fixture(scope="session")
def debian_venv_with_torch(debian_python: str) -> str:
    """A --system-site-packages venv on the system Python, with pip's torch on top."""
    venv = _build("debian-venv-torch", [
        [debian_python, "-m", "venv", "--system-site-packages", "{target}"],
        ["{target}/bin/python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", TORCH],
    ])
    return str(venv / "bin" / "python")


@pytest.fixture(scope="session")
def debian_user_site(debian_python: str) -> Path:
    """PYTHONUSERBASE with `pip install --user numpy==1.26.4` on the system Python (a NumPy
    the system's SciPy 1.x still works with)."""
    if not _system_python_has("pip"):
        pytest.skip(f"{SYSTEM_PYTHON} has no pip (apt's python3-pip; {APT_HINT})")
    return _build("debian-user-site", [
        [debian_python, "-m", "pip", "install", "--quiet", "--user",
         "--break-system-packages", "--no-warn-script-location",
         "--disable-pip-version-check", "numpy==1.26.4"],
    ], env={"PYTHONUSERBASE": str(ENVS / "debian-user-site")})


@pytest.fixture(scope="session")
def bare_python() -> str:
    """An interpreter with nothing installed (a venv without pip or system site-packages),
    like a Lambda runtime whose packages all come from PYTHONPATH."""
    venv = _build("bare-venv", [[sys.executable, "-m", "venv", "--without-pip", "{target}"]])
    return str(venv / "bin" / "python")


@pytest.fixture(scope="session")
def shallow_target():
    """`pip install --target` of numpy, scipy and numdoctor's dependencies, copied to
    /tmp/nd-target-XXXX: two levels below the root, as /opt/python is."""
    versions = []
    for name in ("numpy", "scipy", *NUMDOCTOR_DEPS):
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed in the test environment")
    built = _build("target-install", [
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--no-compile", "--target", "{target}/python",
         *versions],
    ])
    shallow = tempfile.mkdtemp(prefix="nd-target-", dir="/tmp")
    os.rmdir(shallow)
    shutil.copytree(built / "python", shallow, symlinks=True)
    yield shallow
    shutil.rmtree(shallow, ignore_errors=True)
