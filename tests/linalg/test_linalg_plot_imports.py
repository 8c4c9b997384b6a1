"""Plots (Agg backend) and import hygiene of numdoctor.linalg."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import numdoctor.linalg as la
from numdoctor.linalg import problems

PKG = pathlib.Path(la.__file__).parent


@pytest.fixture
def plt():
    mpl = pytest.importorskip("matplotlib", reason="matplotlib not installed (linalg-plot extra)")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture
def result():
    A, b, _ = problems.shaw(48)
    rng = np.random.default_rng(0)
    return la.tikhonov(A, b + 1e-3 * np.linalg.norm(b) / 7 * rng.standard_normal(48))


def test_picard(plt, result):
    ax = la.plot.picard(result)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("λ =") for lbl in labels) and len(ax.lines) == 4
    A, b, _ = problems.baart(16)
    ax = la.plot.picard(A, b)
    assert len(ax.lines) == 3


def test_lcurve_and_gcv_mark_chosen_lambda(plt, result):
    ax = la.plot.lcurve(result)
    xs, ys = ax.lines[1].get_data()
    assert xs[0] == pytest.approx(result.residual_norm)
    assert ys[0] == pytest.approx(result.solution_norm)
    assert result.method in ax.get_legend().get_texts()[0].get_text()
    _fig, ax2 = plt.subplots()
    out = la.plot.gcv(result, ax=ax2)
    assert out is ax2
    vline = ax2.lines[1].get_xdata()
    assert vline[0] == pytest.approx(result.lam)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            rel = "." * node.level
            found.add(rel + (node.module or ""))
    return found


def test_imports_nothing_else_from_numdoctor():
    allowed_abs = {"numpy", "scipy", "torch", "tensorflow", "jax", "matplotlib"}
    for path in PKG.rglob("*.py"):
        depth = len(path.relative_to(PKG).parts) - 1  # 0 for linalg/x.py, 1 for _backends/x.py
        for mod in _imports(path):
            if mod.startswith("."):
                level = len(mod) - len(mod.lstrip("."))
                assert level <= depth + 1, f"{path.name} reaches outside linalg: {mod}"
            else:
                root = mod.split(".")[0]
                assert root in allowed_abs or root in sys.stdlib_module_names, (path, mod)
                assert root != "numdoctor", (path, mod)


def test_frameworks_not_imported_for_numpy_input():
    code = (
        "import sys, numpy as np, numdoctor.linalg as la\n"
        "la.solve(np.eye(3), np.ones(3)); la.tikhonov(np.eye(3), np.ones(3)); la.pinv(np.eye(2))\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_backend_detection_by_type_module():
    from numdoctor.linalg._backends import backend_name

    class Fake:
        pass

    for mod, name in (("torch", "torch"), ("tensorflow.python.framework.ops", "tensorflow"),
                      ("jaxlib.xla_extension", "jax"), ("numpy", None), ("torchvision", None)):
        Fake.__module__ = mod
        assert backend_name(Fake()) == name
    with pytest.raises(la.DTypeError, match="mix frameworks"):
        from numdoctor.linalg._backends import dispatch

        class T:
            __module__ = "torch"

        class F:
            __module__ = "tensorflow"

        dispatch(T(), F())


def test_public_api():
    for name in la.__all__:
        assert hasattr(la, name), name
    assert issubclass(la.GuardError, np.linalg.LinAlgError)
    for cls in (la.IllConditionedError, la.SingularMatrixError, la.NonFiniteError,
                la.ShapeError, la.DTypeError, la.NotPositiveDefiniteError,
                la.ParameterChoiceError):
        assert issubclass(cls, la.GuardError)
    assert issubclass(la.ShapeError, ValueError)
    assert issubclass(la.DTypeError, TypeError)
