"""Condition numbers, pseudo-inverse conventions and rank-revealing least squares."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from _linalg_helpers import DTYPES, random_matrix

import numdoctor.linalg as la
from numdoctor.linalg import problems


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, np.inf])
def test_cond_estimate_is_tight_lower_bound(rng, dtype, p):
    for n in (3, 40, 300):
        A = random_matrix(rng, (n, n), dtype)
        est = la.cond_estimate(A, p=p)
        exact = np.linalg.cond(A.astype(np.complex128), p)
        assert exact / 3 <= est <= exact * (1 + 1e-3)


def test_cond_estimate_batched_and_singular(rng):
    A = np.stack([np.eye(3), np.zeros((3, 3)), problems.hilbert(3).A])
    est = la.cond_estimate(A)
    assert est.shape == (3,)
    assert est[0] == 1.0 and np.isinf(est[1])
    assert est[2] == pytest.approx(np.linalg.cond(problems.hilbert(3).A, 1))
    with pytest.raises(la.NonFiniteError) as ei:
        la.cond_estimate(np.stack([np.eye(2), np.full((2, 2), np.nan)]))
    assert ei.value.indices == [(1,)]
    with pytest.raises(ValueError, match="p=1 or p=inf"):
        la.cond_estimate(np.eye(2), p=2)


def test_cond_exact(rng):
    A = random_matrix(rng, (2, 5, 5), np.float64)
    np.testing.assert_allclose(la.cond(A), np.linalg.cond(A))
    np.testing.assert_allclose(la.cond(A, 1), np.linalg.cond(A, 1))
    np.testing.assert_allclose(la.cond(A, "fro"), np.linalg.cond(A, "fro"))
    R = random_matrix(rng, (6, 3), np.float64)
    assert la.cond(R) == pytest.approx(np.linalg.cond(R))
    assert np.isinf(la.cond(np.zeros((3, 3))))
    assert np.isinf(la.cond(np.zeros((3, 3)), 1))
    assert la.cond(problems.hilbert(6).A, 1, exact=False) == pytest.approx(
        la.cond_estimate(problems.hilbert(6).A))
    with pytest.raises(ValueError, match="no cheap 2-norm"):
        la.cond(np.eye(2), exact=False)


def _spectrum_matrix(rng, shape, dtype, s):
    u, _ = np.linalg.qr(random_matrix(rng, (shape[0], shape[0]), np.complex128
                                      if np.dtype(dtype).kind == "c" else np.float64))
    v, _ = np.linalg.qr(random_matrix(rng, (shape[1], shape[1]), u.dtype))
    k = len(s)
    return ((u[:, :k] * s) @ v[:, :k].conj().T).astype(dtype)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pinv_conventions_match_libraries(rng, shape, dtype):
    k = min(shape)
    eps = np.finfo(dtype).eps
    single = (np.dtype(dtype).itemsize <= 8 and np.dtype(dtype).kind == "f") or \
        np.dtype(dtype) == np.complex64
    tol = 1e-4 if single else 1e-10
    # Full rank, well separated: every convention keeps everything and must agree.
    A = _spectrum_matrix(rng, shape, dtype, np.linspace(1.0, 0.1, k))
    for conv, ref in (("numpy", np.linalg.pinv), ("scipy", sla.pinv)):
        np.testing.assert_allclose(la.pinv(A, convention=conv), ref(A), rtol=tol, atol=tol)
    # Exactly rank k-1: the computed "zero" singular value is rounding noise ~ eps·σ₁; the
    # eps-relative conventions drop it and agree with SciPy (and NumPy when given rtol).
    R = _spectrum_matrix(rng, shape, dtype, np.r_[np.linspace(1.0, 0.1, k - 1), 0.0])
    ours, info = la.pinv(R, return_info=True)
    assert info.rank == k - 1
    assert info.cutoff == pytest.approx(max(shape) * eps * info.singular_values[0])
    np.testing.assert_allclose(ours, sla.pinv(R), rtol=tol, atol=tol)
    np.testing.assert_allclose(ours, np.linalg.pinv(R, rtol=max(shape) * eps), rtol=tol,
                               atol=tol)
    np.testing.assert_allclose(la.pinv(R, convention="scipy", atol=1e-3, rtol=0),
                               sla.pinv(R, atol=1e-3, rtol=0), rtol=tol, atol=tol)
    _, info = la.pinv(R, convention="jax", return_info=True)
    assert info.cutoff == pytest.approx(10 * max(shape) * eps * info.singular_values[0])
    _, info = la.pinv(R, convention="numpy", return_info=True)
    assert info.cutoff == pytest.approx(1e-15 * info.singular_values[0])


def test_pinv_torch_convention_rules():
    s_max, shape, dt = 2.0, (3, 4), np.dtype(np.float64)
    eps = np.finfo(dt).eps
    from numdoctor.linalg._pinv import cutoff

    assert cutoff(s_max, shape, dt, convention="torch") == 4 * eps * 2
    assert cutoff(s_max, shape, dt, convention="torch", atol=1e-3) == 1e-3  # rtol becomes 0
    assert cutoff(s_max, shape, dt, convention="numdoctor", atol=1e-20) == 4 * eps * 2
    assert cutoff(s_max, shape, dt, convention="scipy", atol=1e-3) == 1e-3 + 4 * eps * 2
    with pytest.raises(ValueError):
        cutoff(s_max, shape, dt, convention="numpy", atol=1.0)
    with pytest.raises(ValueError):
        la.pinv(np.eye(2), convention="matlab")


def test_pinv_batched_empty_and_nonfinite(rng):
    A = random_matrix(rng, (3, 4, 2), np.float64)
    np.testing.assert_allclose(la.pinv(A), np.linalg.pinv(A), atol=1e-12)
    assert la.pinv(np.zeros((0, 3))).shape == (3, 0)
    with pytest.raises(la.NonFiniteError):
        la.pinv(np.array([[1.0, np.inf]]))


def test_lstsq_rank_revealing(rng):
    A = random_matrix(rng, (20, 5), np.float64)
    A[:, 4] = A[:, 3]  # exactly rank 4
    b = rng.standard_normal(20)
    x, info = la.lstsq(A, b, return_info=True)
    assert info.rank == 4 and info.rank_deficient
    np.testing.assert_allclose(x, np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-10)
    assert info.residual_norm == pytest.approx(np.linalg.norm(A @ x - b))
    X = la.lstsq(A, np.stack([b, 2 * b], axis=1))
    np.testing.assert_allclose(X[:, 1], 2 * x, atol=1e-10)
    with pytest.raises(la.ShapeError, match=r"\(19,\)"):
        la.lstsq(A, b[:-1])
    with pytest.raises(la.NonFiniteError):
        la.lstsq(A, np.full(20, np.nan))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_mixed_precision_estimate_matches_full_precision(rng, dtype):
    from numdoctor.linalg import _cond, _lapack

    n = 300
    for kappa in (1.0, 1e3, 1e5, 1e9):
        q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
        q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
        A = ((q1 * np.logspace(0, -np.log10(kappa), n)) @ q2.T).astype(dtype)
        full = 1 / _lapack.factorize(A, "gen", np.dtype(dtype)).rcond()
        est = la.cond_estimate(A)
        if kappa < _cond.MIXED_MAX_KAPPA / 10:
            assert _cond._mixed_estimate(A, np.dtype(dtype), "1") is not None
            assert est == pytest.approx(full, rel=1e-2)
        else:
            assert _cond._mixed_estimate(A, np.dtype(dtype), "1") is None
            assert est == full
    # Entries outside single precision's range fall back to the full-precision path.
    for scale in (1e39, 1e-41):
        A = (rng.standard_normal((n, n)) * scale).astype(dtype)
        assert la.cond_estimate(A) == pytest.approx(np.linalg.cond(A, 1), rel=0.7)
