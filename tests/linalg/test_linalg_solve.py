"""Guarded solve / inv on NumPy input: answers, the guard, the policy, batches."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from _linalg_helpers import DTYPES, RTOL, random_matrix, well_conditioned

import numdoctor.linalg as la
from numdoctor.linalg import problems


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_solve_matches_numpy(rng, dtype, n):
    A = well_conditioned(rng, (n, n), dtype)
    b = random_matrix(rng, (n, 3), dtype)
    x = la.solve(A, b)
    ref = np.linalg.solve(A, b.astype(A.dtype))
    assert x.dtype == ref.dtype
    np.testing.assert_allclose(x, ref, rtol=RTOL[np.dtype(dtype)] * 10, atol=1e-5)


def test_vector_rhs_and_batch_broadcast(rng):
    A = well_conditioned(rng, (3, 2, 5, 5), np.float64)
    b = rng.standard_normal(5)
    x = la.solve(A, b)
    assert x.shape == (3, 2, 5)
    np.testing.assert_allclose(np.einsum("...ij,...j->...i", A, x), np.broadcast_to(b, (3, 2, 5)))
    B = rng.standard_normal((2, 5, 4))  # broadcasts against (3, 2)
    X = la.solve(A, B)
    assert X.shape == (3, 2, 5, 4)
    np.testing.assert_allclose(A @ X, np.broadcast_to(B, (3, 2, 5, 4)), atol=1e-12)


def test_input_not_modified(rng):
    A = well_conditioned(rng, (50, 50), np.float64)
    b = rng.standard_normal(50)
    A0, b0 = A.copy(), b.copy()
    la.solve(A, b)
    la.inv(A)
    la.solve(np.asfortranarray(A), b)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n", [10, 400])
def test_layouts_and_estimator_paths(rng, order, n):
    # n = 400 takes the getrs-driven estimator, n = 10 LAPACK's gecon; both must agree with
    # the exact κ₁ within the estimator's lower-bound guarantee.
    A = np.array(rng.standard_normal((n, n)), order=order)
    _, info = la.solve(A, np.ones(n), return_info=True)
    exact = np.linalg.cond(A, 1)
    assert 1 / exact <= info.rcond * (1 + 1e-8)
    assert info.cond_estimate >= exact / 3


def test_hilbert_guard_raises_where_answer_is_useless():
    """Raise whenever the LU answer has fewer than 3 correct digits; pass when ≥ 8 remain."""
    for n in range(2, 15):
        A, b, x = problems.hilbert(n)
        err = np.linalg.norm(np.linalg.solve(A, b) - x) / np.linalg.norm(x)
        try:
            xs, info = la.solve(A, b, return_info=True)
        except la.IllConditionedError as e:
            assert e.digits_lost > 0.75 * e.digits_available
            assert e.rcond < la.default_min_rcond(np.dtype(np.float64))
            assert "digits lost" in str(e) and "on_ill='tikhonov'" in str(e)
            continue
        assert err < 1e-3, f"n={n}: relative error {err:.1e} returned without an error"
        assert info.status == la.Status.OK
        # forward error within the κ·u bound the estimate promises
        np.testing.assert_allclose(xs, x, rtol=info.cond_estimate * 1e-15)
    for n in (2, 3, 4, 5, 6):  # plenty of digits left: must not raise
        A, b, _ = problems.hilbert(n)
        la.solve(A, b)
    for n in (11, 12, 13):  # scipy stays silent at n = 11 with a 1e-2 error
        A, b, _ = problems.hilbert(n)
        with pytest.raises(la.IllConditionedError):
            la.solve(A, b)


@pytest.mark.parametrize("n", range(2, 14))
def test_hilbert_estimate_within_10x_of_true_condition(n):
    A = problems.hilbert(n).A
    est = la.cond_estimate(A)
    k1 = np.linalg.cond(A, 1)
    k2 = np.linalg.cond(A, 2)
    if k2 > 1e15:  # beyond float64 the "true" values are themselves rounding-limited
        assert est > 1e14
        return
    assert k1 / 10 <= est <= k1 * 10
    assert k2 / 10 <= est <= k2 * 10


def test_error_attributes_and_message():
    A, b, _ = problems.hilbert(11)
    with pytest.raises(la.IllConditionedError) as ei:
        la.solve(A, b)
    e = ei.value
    assert isinstance(e, np.linalg.LinAlgError) and isinstance(e, ValueError)
    assert e.indices == [()]
    assert e.cond_estimate == pytest.approx(1 / e.rcond)
    assert 14 < e.digits_lost <= e.digits_available
    msg = str(e)
    assert msg.startswith("matrix is ill-conditioned: rcond≈")
    assert "of 15.9 float64 digits lost" in msg
    assert "κ₁≈1.2e15" in msg


def test_singular_matrix():
    A = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(la.SingularMatrixError) as ei:
        la.solve(A, [1.0, 2.0])
    assert ei.value.rcond == 0.0
    assert isinstance(ei.value, la.IllConditionedError)
    x, info = la.solve(A, [1.0, 2.0], on_ill="ignore", return_info=True)
    assert np.isnan(x).all() and info.status == la.Status.SINGULAR
    with pytest.raises(la.SingularMatrixError):
        la.solve(A, [1.0, 2.0], on_ill="warn")  # no finite answer to warn about


def test_batch_reports_every_bad_matrix(hilbert_batch):
    A = hilbert_batch
    with pytest.raises(la.SingularMatrixError) as ei:
        la.solve(A, np.ones(4))
    e = ei.value
    assert e.indices == [(1,), (2,)]
    np.testing.assert_array_equal(e.status, [0, la.Status.SINGULAR, la.Status.ILL_CONDITIONED, 0])
    assert "[1] singular" in str(e) and "[2] ill-conditioned" in str(e)
    assert "2 of 4 matrices" in str(e)


def test_batch_ignore_and_raise_later(hilbert_batch):
    x, info = la.solve(hilbert_batch, np.ones(4), on_ill="ignore", return_info=True)
    assert not info.ok
    np.testing.assert_allclose(x[0], np.ones(4))
    np.testing.assert_allclose(x[3], [1, 1 / 2, 1 / 3, 1 / 4])
    assert np.isnan(x[1]).all()
    with pytest.raises(la.SingularMatrixError) as ei:
        info.raise_for_status()
    assert ei.value.indices == [(1,), (2,)]


@pytest.mark.parametrize("on_ill", ["lstsq", "pinv", "tikhonov"])
def test_fallbacks_replace_only_bad_matrices(hilbert_batch, on_ill):
    x, info = la.solve(hilbert_batch, np.ones(4), on_ill=on_ill, return_info=True)
    assert np.isfinite(x).all()
    assert list(info.method) == ["lu", on_ill, on_ill, "lu"]
    np.testing.assert_allclose(x[3], [1, 1 / 2, 1 / 3, 1 / 4])
    np.testing.assert_allclose(x[1], 0.0)  # zero matrix: minimum-norm answer
    if on_ill == "tikhonov":
        assert np.isfinite(info.lam[2]) and np.isnan(info.lam[0])
    assert np.linalg.norm(x[2]) < 1e8  # not the 1e14-amplified LU answer


def test_warn_mode():
    A, b, _ = problems.hilbert(10)
    with pytest.warns(la.IllConditionedWarning, match="digits lost") as rec:
        x = la.solve(A, b, on_ill="warn")
    assert np.isfinite(x).all()
    assert rec[0].message.info["digits_lost"] > 12
    import scipy.linalg

    assert issubclass(la.IllConditionedWarning, scipy.linalg.LinAlgWarning)


def test_per_call_threshold_and_policy():
    A, b, _ = problems.hilbert(8)  # κ₁ ≈ 3.4e10: 10.5 digits lost
    la.solve(A, b)
    with pytest.raises(la.IllConditionedError):
        la.solve(A, b, max_digits_lost=8)
    with pytest.raises(la.IllConditionedError):
        la.solve(A, b, min_rcond=1e-9)
    with la.policy(max_digits_lost=8):
        with pytest.raises(la.IllConditionedError):
            la.solve(A, b)
        la.solve(A, b, max_digits_lost=12)  # per call wins
        with la.policy(on_ill="warn"), pytest.warns(la.IllConditionedWarning):
            la.solve(A, b)  # threshold inherited from the outer block
        assert la.get_policy().max_digits_lost == 8
    assert la.get_policy() == la.Policy()
    A11 = problems.hilbert(11).A
    with la.policy(min_rcond=0.0):
        la.solve(A11, np.ones(11))  # guard off
    with pytest.raises(ValueError):
        la.solve(A, b, on_ill="explode")
    with pytest.raises(ValueError):
        la.Policy(min_rcond=1e-3, max_digits_lost=3)


def test_default_threshold_rule():
    for dt, digits in ((np.float64, 15.95), (np.float32, 7.22)):
        thr = la.default_min_rcond(np.dtype(dt))
        assert -np.log10(thr) == pytest.approx(0.75 * digits, abs=0.01)
    assert la.default_min_rcond(np.dtype(np.complex64)) == la.default_min_rcond(
        np.dtype(np.float32)
    )
    # stricter than scipy, which warns only below eps
    assert la.default_min_rcond(np.dtype(np.float64)) > np.finfo(float).eps * 1000


def test_info_fields(rng):
    A = well_conditioned(rng, (20, 20), np.float64)
    b = rng.standard_normal(20)
    _x, info = la.solve(A, b, return_info=True)
    assert info.method == "lu" and info.ok and info.status == la.Status.OK
    assert info.backward_error < 1e-15
    assert info.relative_residual < 1e-13
    assert info.cond_estimate == pytest.approx(np.linalg.cond(A, 1), rel=0.5)
    assert info.digits_lost == pytest.approx(np.log10(info.cond_estimate))
    assert info.dtype == "float64"


@pytest.mark.parametrize("assume_a", ["sym", "her", "pos"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_structured_solvers(rng, assume_a, dtype):
    n = 30
    M = well_conditioned(rng, (n, n), dtype)
    if assume_a == "sym":
        A = M + M.T
    elif assume_a == "her":
        A = M + M.conj().T
    else:
        A = M @ M.conj().T + n * np.eye(n, dtype=dtype)
    b = rng.standard_normal(n).astype(dtype)
    x, info = la.solve(A, b, assume_a=assume_a, return_info=True)
    ref = sla.solve(A, b, assume_a={"sym": "sym", "her": "her", "pos": "pos"}[assume_a])
    np.testing.assert_allclose(x, ref, rtol=RTOL[np.dtype(dtype)] * 100, atol=1e-4)
    assert info.method == {"pos": "cholesky"}.get(assume_a, "ldl")


def test_not_positive_definite():
    with pytest.raises(la.NotPositiveDefiniteError):
        la.solve(np.diag([1.0, -1.0]), [1.0, 1.0], assume_a="pos")
    with pytest.raises(la.NotPositiveDefiniteError):
        la.solve(np.diag([1.0, -1.0]), [1.0, 1.0], assume_a="pos", on_ill="tikhonov")
    with pytest.raises(ValueError, match="assume_a"):
        la.solve(np.eye(2), [1.0, 1.0], assume_a="banded")


def test_nonfinite_always_raises():
    A = np.eye(3)
    A[1, 2] = np.inf
    for on_ill in ("raise", "warn", "lstsq", "tikhonov"):
        with pytest.raises(la.NonFiniteError) as ei:
            la.solve(A, np.ones(3), on_ill=on_ill)
        assert ei.value.operand == "A" and ei.value.where == [(1, 2)]
    with pytest.raises(la.NonFiniteError) as ei:
        la.solve(np.eye(3), [1.0, np.nan, 1.0])
    assert ei.value.operand == "b" and ei.value.where == [(1, 0)]
    x, info = la.solve(A, np.ones(3), on_ill="ignore", return_info=True)
    assert info.status == la.Status.NONFINITE and np.isnan(x).all()


def test_shape_and_dtype_errors():
    with pytest.raises(la.ShapeError, match=r"\(3, 4\)") as ei:
        la.solve(np.ones((3, 4)), np.ones(3))
    assert isinstance(ei.value, ValueError) and ei.value.shapes == {"A": (3, 4)}
    with pytest.raises(la.ShapeError, match=r"b has shape \(4,\).*A of shape \(3, 3\)"):
        la.solve(np.eye(3), np.ones(4))
    with pytest.raises(la.ShapeError, match="do not broadcast"):
        la.solve(np.ones((2, 3, 3)), np.ones((4, 3, 1)))
    with pytest.raises(la.ShapeError):
        la.solve(np.ones(3), np.ones(3))
    with pytest.raises(la.DTypeError) as ei:
        la.solve(np.eye(2, dtype=np.longdouble), np.ones(2))
    assert isinstance(ei.value, TypeError)
    with pytest.raises(la.DTypeError):
        la.solve(np.array([["a", "b"], ["c", "d"]]), np.ones(2))


def test_int_and_bool_promote_to_float64():
    x = la.solve(np.array([[2, 0], [0, 4]]), np.array([2, 4]))
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, [1, 1])


def test_empty():
    x = la.solve(np.zeros((0, 0)), np.zeros(0))
    assert x.shape == (0,)
    x, info = la.solve(np.zeros((2, 0, 0)), np.zeros((2, 0, 3)), return_info=True)
    assert x.shape == (2, 0, 3) and info.ok
    assert la.inv(np.zeros((0, 0))).shape == (0, 0)
    assert la.solve(np.zeros((0, 3, 3)), np.zeros(3)).shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inv(rng, dtype):
    A = well_conditioned(rng, (2, 6, 6), dtype)
    X, info = la.inv(A, return_info=True)
    np.testing.assert_allclose(X, np.linalg.inv(A), rtol=RTOL[np.dtype(dtype)] * 10, atol=1e-6)
    assert list(info.method) == ["lu", "lu"]
    P = A[0] @ A[0].conj().T
    np.testing.assert_allclose(la.inv(P, assume_a="pos"), np.linalg.inv(P), rtol=1e-3,
                               atol=1e-6)


def test_inv_guard_and_fallbacks():
    A = problems.hilbert(12).A
    with pytest.raises(la.IllConditionedError):
        la.inv(A)
    Xp = la.inv(A, on_ill="pinv")
    np.testing.assert_allclose(Xp, la.pinv(A, rtol=la.default_min_rcond(np.dtype(float))))
    Xt, info = la.inv(A, on_ill="tikhonov", return_info=True)
    assert info.method == "tikhonov" and info.lam > 0
    assert np.linalg.norm(Xt, 2) <= 1 / (2 * info.lam) * 1.0001


def test_float32_uses_float32_threshold():
    A = problems.hilbert(5).A.astype(np.float32)  # κ₁ ≈ 9.4e5 > 1/3.8e-6
    with pytest.raises(la.IllConditionedError, match=r"of 7\.2 float32 digits"):
        la.solve(A, np.ones(5, dtype=np.float32))
    la.solve(problems.hilbert(3).A.astype(np.float32), np.ones(3, dtype=np.float32))


def test_no_warnings_on_clean_input(rng):
    A = well_conditioned(rng, (10, 10), np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        la.solve(A, np.ones(10))
        la.inv(A)
        la.cond_estimate(A)


def test_small_batch_path_agrees_with_per_matrix_loop(rng, hilbert_batch):
    # ≥ 32 small matrices take the vectorized path; each matrix alone takes the LAPACK loop.
    A = np.concatenate([hilbert_batch] * 10 + [well_conditioned(rng, (8, 4, 4), np.float64)])
    A[5, 2, 2] = np.nan
    b = rng.standard_normal((len(A), 4, 2))
    b[7, 0, 1] = np.inf
    x, info = la.solve(A, b, on_ill="ignore", return_info=True)
    for i in range(len(A)):
        xi, ii = la.solve(A[i], b[i], on_ill="ignore", return_info=True)
        assert info.status[i] == ii.status, i
        if ii.status == la.Status.OK:
            np.testing.assert_allclose(x[i], xi, rtol=1e-10)
            # vectorized path: exact κ₁; loop: LAPACK's estimate, a lower bound within 3×
            assert info.rcond[i] <= ii.rcond * (1 + 1e-9) <= 3 * info.rcond[i]
    with pytest.raises(la.NonFiniteError) as ei:
        la.solve(A, b)
    assert (5,) in ei.value.indices and (7,) in ei.value.indices and (1,) in ei.value.indices
    assert "exactly zero pivot" in str(ei.value) or "pivot" in str(ei.value)
    xs = la.solve(A[np.r_[0, 3, 40:48]].repeat(4, axis=0), np.ones(4))
    assert xs.shape == (40, 4) and np.isfinite(xs).all()
