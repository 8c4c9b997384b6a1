"""RELOAD001 in real processes: importlib.reload, a purge and re-import, and a clean run."""

from __future__ import annotations

import pytest
from binary_helpers import collect_report, findings

from numdoctor.snapshot.model import ModuleReload


@pytest.mark.slow
def test_importlib_reload_of_numpy_is_detected_in_process():
    report = collect_report("""
        import importlib
        import numpy
        importlib.reload(numpy)
    """)
    hows = {r["how"] for r in report["snapshot"]["binary"]["reloads"] if r["module"] == "numpy"}
    assert {"reload", "numpy-reload-warning"} <= hows
    (finding,) = findings(report, "RELOAD001")
    assert finding["title"] == "numpy was imported a second time in this process"
    assert any("importlib.reload" in line for line in finding["evidence"])
    assert any("The NumPy module was reloaded" in line for line in finding["evidence"])
    assert "%aimport -numpy" in finding["fix"]


@pytest.mark.slow
def test_reload_is_detected_even_when_warnings_are_ignored():
    report = collect_report("""
        import importlib, warnings
        warnings.simplefilter("ignore")
        import numpy
        importlib.reload(numpy)
    """)
    hows = {r["how"] for r in report["snapshot"]["binary"]["reloads"]}
    assert "reload" in hows and "numpy-reload-warning" not in hows
    assert findings(report, "RELOAD001")


@pytest.mark.slow
def test_purge_and_reimport_leaves_a_stale_module_behind(tmp_path):
    (tmp_path / "holder_mod.py").write_text("import threadpoolctl\n")
    report = collect_report("""
        import sys
        import holder_mod
        for name in [n for n in sys.modules if n.split(".")[0] == "threadpoolctl"]:
            del sys.modules[name]
        import threadpoolctl
    """, pythonpath=[tmp_path])
    reloads = report["snapshot"]["binary"]["reloads"]
    (stale,) = [r for r in reloads if r["how"] == "stale-reference"]
    assert stale["module"] == "threadpoolctl" and "holder_mod" in stale["detail"]
    assert findings(report, "RELOAD001")


@pytest.mark.slow
def test_plain_imports_report_no_reload():
    report = collect_report(
        "import numpy, scipy.linalg, sklearn.linear_model, threadpoolctl, torch")
    assert report["snapshot"]["binary"]["reloads"] == []
    assert not findings(report, "RELOAD001")


def test_reload_facts_round_trip():
    from numdoctor.snapshot.model import Snapshot

    snapshot = Snapshot()
    snapshot.binary.reloads.append(ModuleReload(module="numpy", how="reload", detail="x"))
    again = Snapshot.from_dict(snapshot.to_dict())
    assert again.binary.reloads == snapshot.binary.reloads


def test_lazy_first_load_is_not_a_reload():
    # lazy_loader (scikit-image, ...) loads modules with importlib.util.LazyLoader: their spec
    # also skips the normal import path, but it is their first and only execution.
    report = collect_report("""
        import importlib.util, sys
        spec = importlib.util.find_spec("threadpoolctl")
        module = importlib.util.module_from_spec(spec)
        sys.modules["threadpoolctl"] = module
        importlib.util.LazyLoader(spec.loader).exec_module(module)
        module.threadpool_info
    """)
    assert report["snapshot"]["binary"]["reloads"] == []
