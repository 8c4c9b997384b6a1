"""A collection step that fails is a finding (ND001), the rest of the report is complete; an
interpreter with nothing to import says so (IMP005); only relevant variables are shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from checkutil import check_json, codes, run_cli

from numdoctor._version import __version__
from numdoctor.findings import Report, Severity
from numdoctor.rules import apply_rules
from numdoctor.snapshot.environment import pick_environment

REPO = Path(__file__).resolve().parents[2]


def test_a_failing_owner_lookup_is_nd001_and_the_libraries_are_still_there(monkeypatch):
    """The original bug (IndexError in the owner lookup), injected: the snapshot keeps every
    library and framework, and names the step that failed."""
    import numpy  # noqa: F401  (its OpenBLAS must be loaded in this process)

    import numdoctor.snapshot.collect as collect

    def broken(path: str) -> tuple[str, str]:
        raise IndexError(2)

    monkeypatch.setattr(collect, "owning_package", broken)
    snapshot = collect.collect(threadpools=False)
    assert any(lib.vendor == "openblas" for lib in snapshot.libraries)
    assert any(f.name == "numpy" for f in snapshot.frameworks)
    steps = {e.step: e for e in snapshot.collection_errors}
    error = steps["owner of each loaded library"]
    assert error.error == "IndexError: 2" and "in broken" in error.where
    assert "owner of each framework" in steps
    findings = [f for f in apply_rules(snapshot) if f.code == "ND001"]
    assert len(findings) == len(snapshot.collection_errors)
    first = next(f for f in findings if "owner of each loaded library" in f.title)
    assert first.severity is Severity.WARNING
    assert "error: IndexError: 2" in first.evidence
    assert f"numdoctor {__version__}" in first.fix and "report" in first.fix
    report = Report(kind="check", findings=findings, snapshot=snapshot.to_dict())
    assert not report.fails("error") and report.fails("warning")


def test_a_failing_live_step_is_nd001(monkeypatch):
    import numdoctor.snapshot.frameworks as frameworks
    from numdoctor.snapshot.live import live_facts

    def broken() -> list:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(frameworks, "collect_frameworks", broken)
    facts = live_facts(threadpools=False)
    assert facts["frameworks"] == [] and facts["libraries"]
    (error,) = facts["errors"]
    assert error["step"] == "frameworks" and error["error"].startswith("UnicodeDecodeError")


def test_nothing_installed_says_so(tmp_path):
    """A default check in an interpreter without any numerical framework: a venv made
    without pip or system site-packages, with numdoctor and its dependencies only (as pipx
    installs it)."""
    import importlib

    venv = tmp_path / "empty"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in ("rich", "packaging", "psutil", "threadpoolctl", "markdown_it", "mdurl",
                 "pygments"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        location = Path(module.__file__)
        if location.name == "__init__.py":
            os.symlink(location.parent, deps / name)
        else:
            os.symlink(location, deps / location.name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{REPO / 'src'}:{deps}"
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "numdoctor", "check"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMP005" in result.stdout
    assert "Nothing was imported: no numerical framework is installed for" in result.stdout
    assert "No problems found." not in result.stdout


def test_explicit_imports_are_not_imp005():
    report = check_json("--import", "numpy")
    assert "IMP005" not in codes(report)
    assert report["snapshot"]["import_set"] == "explicit"


@pytest.mark.slow
def test_default_check_reports_numpy_and_scipy_openblas():
    """The default import set loads scipy.linalg: both OpenBLAS copies are in the report,
    and each framework names the one serving its calls."""
    result = run_cli("check", "--format", "json", "--fail-on", "never")
    assert result.returncode == 0, result.stderr[-3000:]
    snapshot = json.loads(result.stdout)["snapshot"]
    assert snapshot["import_set"] == "default"
    modules = [a["module"] for a in snapshot["imports"]]
    assert modules.index("scipy.linalg") == modules.index("scipy") + 1
    owners = {lib["path"]: lib["distribution"] for lib in snapshot["libraries"]
              if lib["vendor"] == "openblas"}
    for name in ("numpy", "scipy"):
        fw = next(f for f in snapshot["frameworks"] if f["name"] == name)
        (served,) = fw["blas_libraries"]
        assert owners[served] == name


def test_only_the_variables_the_stack_reads_are_shown():
    picked = pick_environment({
        "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "TF_VAR_region": "eu", "TF_LOG": "DEBUG",
        "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "4", "TF_XLA_FLAGS": "x",
        "TF_ENABLE_ONEDNN_OPTS": "0", "TF2_BEHAVIOR": "1", "OMP_NUM_THREADS": "4",
        "PJRT_NPROC": "2", "NPY_DISABLE_CPU_FEATURES": "AVX512F", "HOME": "/root",
        "TERRAFORM_X": "1", "OMP_PROC_BIND": "spread\udcff",
    })
    assert set(picked) == {"TF_CPP_MIN_LOG_LEVEL", "TF_NUM_INTRAOP_THREADS", "TF_XLA_FLAGS",
                           "TF_ENABLE_ONEDNN_OPTS", "TF2_BEHAVIOR", "OMP_NUM_THREADS",
                           "PJRT_NPROC", "NPY_DISABLE_CPU_FEATURES", "OMP_PROC_BIND"}
    assert picked["OMP_PROC_BIND"] == "spread\\xff"
