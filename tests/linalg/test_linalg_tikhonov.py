"""Tikhonov regularization: the rules, the auto fallbacks, diagnostics and test problems."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import numdoctor.linalg as la
from numdoctor.linalg import problems


def noisy(name: str, level: float, seed: int = 0, n: int = 64):
    A, b0, x = problems.PROBLEMS[name](n)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    e *= level * np.linalg.norm(b0) / np.linalg.norm(e)
    return A, b0 + e, x, float(np.linalg.norm(e))


def best_error(A, b, x):
    u, s, vt = np.linalg.svd(A)
    beta, c = u.T @ b, vt @ x
    lam = np.logspace(np.log10(s[0]) - 17, np.log10(s[0]), 3000)[:, None]
    f = s**2 / (s**2 + lam**2)
    return float(np.sqrt(((f * beta / s - c) ** 2).sum(1)).min())


@pytest.mark.parametrize("name", list(problems.PROBLEMS))
def test_problems_are_consistent(name):
    A, b, x = problems.PROBLEMS[name](32)
    assert A.shape == (32, 32) and b.shape == x.shape == (32,)
    np.testing.assert_allclose(A @ x, b)
    assert np.all(np.isfinite(A))
    assert np.linalg.cond(A) > 1e3  # all of them are ill-posed


def test_problem_details():
    s = np.linalg.svd(problems.deriv2(128).A, compute_uv=False)
    assert s[0] == pytest.approx(1 / np.pi**2, rel=1e-3)  # Green's function eigenvalue
    A = problems.phillips(64).A
    np.testing.assert_allclose(A, A.T)  # symmetric Toeplitz
    H = problems.heat(64).A
    assert np.allclose(np.triu(H, 1), 0)  # Volterra: lower triangular
    assert problems.gravity(16).A.shape == (16, 16)
    assert problems.deriv2(16, example=2).x[0] == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError):
        problems.heat(33)


@pytest.mark.parametrize("name", ["shaw", "phillips", "heat", "foxgood"])
def test_auto_is_close_to_best(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", la.RegularizationWarning)
        for seed in (0, 1):
            A, b, x, _ = noisy(name, 1e-2, seed)
            res = la.tikhonov(A, b)
            assert np.linalg.norm(res.x - x) <= 3.0 * best_error(A, b, x)


def test_result_fields_and_diagnostics():
    A, b, _x, enorm = noisy("shaw", 1e-3)
    res = la.tikhonov(A, b)
    d = res.diagnostics
    assert res.requested == "auto" and res.method in {"rgcv", "median(lcurve,rgcv,quasi)",
                                                      "median(lcurve,rgcv)"}
    assert res.residual_norm == pytest.approx(np.linalg.norm(A @ res.x - b), rel=1e-8)
    assert res.solution_norm == pytest.approx(np.linalg.norm(res.x), rel=1e-8)
    assert 0 < res.dof < 64
    assert set(d.candidates) == {"gcv", "rgcv", "lcurve", "quasi"}
    assert d.gcv_flat and d.gcv_flat_decades > 3  # shaw is severely ill-posed
    assert d.reasons and d.discrepancy_attainable is None
    assert 0.5 * enorm < d.noise_estimate < 2 * enorm
    ev = res.evaluate(res.lam)
    assert ev["residual_norm"][0] == pytest.approx(res.residual_norm)
    assert res.lam_grid.shape == res.gcv_values.shape == res.curvature.shape == (200,)


def test_discrepancy_principle():
    A, b, _x, enorm = noisy("phillips", 1e-2)
    res = la.tikhonov(A, b, lam="discrepancy", noise_norm=enorm)
    assert res.method == "discrepancy"
    assert res.residual_norm == pytest.approx(enorm, rel=1e-6)
    res2 = la.tikhonov(A, b, noise_norm=enorm)  # auto uses it
    assert res2.method == "discrepancy" and res2.lam == pytest.approx(res.lam)
    assert res2.diagnostics.discrepancy_attainable is True
    tau = la.tikhonov(A, b, lam="discrepancy", noise_norm=enorm, tau=1.5)
    assert tau.lam > res.lam


def test_discrepancy_not_attainable():
    A, b, _x, _enorm = noisy("shaw", 1e-2)
    with pytest.raises(la.ParameterChoiceError, match="indistinguishable from noise"):
        la.tikhonov(A, b, lam="discrepancy", noise_norm=10 * np.linalg.norm(b))
    # overdetermined: the part of b outside range(A) is a floor on the residual
    rng = np.random.default_rng(3)
    A2 = np.vstack([A, np.zeros((20, 64))])
    b2 = np.concatenate([b, rng.standard_normal(20)])
    floor = np.linalg.norm(b2[64:])
    with pytest.raises(la.ParameterChoiceError, match="below the smallest attainable"):
        la.tikhonov(A2, b2, lam="discrepancy", noise_norm=0.5 * floor)
    res = la.tikhonov(A2, b2, noise_norm=0.5 * floor)  # auto falls back and says why
    assert res.method != "discrepancy"
    assert res.diagnostics.discrepancy_attainable is False
    assert any("not attainable" in r for r in res.diagnostics.reasons)
    with pytest.raises(la.ParameterChoiceError):
        la.ParameterChoiceError.__mro__  # noqa: B018 - keep linters happy
        raise la.ParameterChoiceError("x")
    assert issubclass(la.ParameterChoiceError, np.linalg.LinAlgError)


def test_auto_reports_unreliable_gcv_and_explicit_rules_warn():
    A, b, _x, _ = noisy("baart", 1e-3)
    res = la.tikhonov(A, b)
    assert res.diagnostics.gcv_flat
    assert any("GCV unreliable" in r for r in res.diagnostics.reasons)
    with pytest.warns(la.RegularizationWarning, match="flat minimum"):
        g = la.tikhonov(A, b, lam="gcv")
    assert g.method == "gcv" and not g.diagnostics.reliable
    for rule in ("rgcv", "lcurve", "quasi"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", la.RegularizationWarning)
            assert la.tikhonov(A, b, lam=rule).method == rule


def test_fixed_lambda_and_edge_cases(rng):
    A, b, _x, _ = noisy("deriv2", 1e-2)
    res = la.tikhonov(A, b, lam=1e-3)
    u, s, vt = np.linalg.svd(A)
    ref = vt.T @ (s / (s**2 + 1e-6) * (u.T @ b))
    np.testing.assert_allclose(res.x, ref, rtol=1e-10)
    assert res.method == "fixed" and res.diagnostics is None
    z = la.tikhonov(A, np.zeros(64))
    assert z.method == "trivial" and not z.x.any()
    z = la.tikhonov(np.zeros((5, 3)), np.ones(5))
    assert z.method == "trivial" and z.x.shape == (3,)
    with pytest.raises(ValueError):
        la.tikhonov(A, b, lam=-1.0)
    with pytest.raises(ValueError):
        la.tikhonov(A, b, lam="best")
    with pytest.raises(ValueError, match="noise_norm"):
        la.tikhonov(A, b, lam="discrepancy")
    with pytest.raises(la.ShapeError, match="one right-hand side"):
        la.tikhonov(A, np.ones((64, 2)))
    with pytest.raises(la.NonFiniteError):
        la.tikhonov(A, np.full(64, np.nan))


def test_complex_and_underdetermined(rng):
    A, b, _x, _ = noisy("phillips", 1e-3)
    P = np.exp(1j * rng.uniform(0, 2 * np.pi, 64))
    res = la.tikhonov(A * P[:, None], b * P)  # unitary row scaling: same problem
    ref = la.tikhonov(A, b)
    assert res.lam == pytest.approx(ref.lam, rel=1e-6)
    np.testing.assert_allclose(res.x.real, ref.x, atol=1e-8)
    wide = la.tikhonov(A[:40], b[:40])
    assert wide.x.shape == (64,) and np.isfinite(wide.x).all()


def test_float32_input():
    A, b, x, _ = noisy("shaw", 1e-2)
    res = la.tikhonov(A.astype(np.float32), b.astype(np.float32))
    assert res.x.dtype == np.float32
    assert np.linalg.norm(res.x - x) < 0.5 * np.linalg.norm(x)
