"""RELOAD002: a second real NumPy on sys.path shadows the installed one."""

from __future__ import annotations

import os

import numpy
import pytest
from binary_helpers import collect_report, findings


@pytest.mark.slow
def test_two_numpy_copies_are_named_with_the_imported_one(other_numpy):
    report = collect_report("import numpy", pythonpath=[other_numpy])
    (shadow,) = [s for s in report["snapshot"]["binary"]["shadowed"] if s["name"] == "numpy"]
    paths = [c["path"] for c in shadow["copies"]]
    venv_copy = os.path.dirname(os.path.realpath(numpy.__file__))
    assert paths[0] == str(other_numpy / "numpy") and venv_copy in paths
    assert shadow["imported"] == str(other_numpy / "numpy")
    versions = {c["path"]: c["version"] for c in shadow["copies"]}
    assert versions[str(other_numpy / "numpy")] == "2.2.6"
    assert versions[venv_copy] == numpy.__version__
    (finding,) = [f for f in findings(report, "RELOAD002") if "numpy" in f["title"]]
    text = "\n".join(finding["evidence"])
    assert str(other_numpy / "numpy") in text and venv_copy in text
    assert "<- imported, native code loaded" in text
    assert f"the imported one is {other_numpy / 'numpy'}" in finding["title"]
    assert venv_copy in finding["fix"]


@pytest.mark.slow
def test_shadowing_is_seen_before_numpy_is_imported(other_numpy):
    report = collect_report("import sys", pythonpath=[other_numpy])
    (finding,) = [f for f in findings(report, "RELOAD002") if "numpy" in f["title"]]
    assert f"import picks {other_numpy / 'numpy'}" in finding["title"]
    assert any("<- would be imported" in line for line in finding["evidence"])
    # The NumPy that extensions are judged against is the one an import would pick.
    assert report["snapshot"]["binary"]["numpy"]["version"] == "2.2.6"
    assert report["snapshot"]["binary"]["numpy"]["loaded"] is False


@pytest.mark.slow
def test_no_shadowing_in_the_stock_environment():
    report = collect_report("import numpy")
    assert report["snapshot"]["binary"]["shadowed"] == []
