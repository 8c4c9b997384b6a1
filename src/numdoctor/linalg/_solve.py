"""Guarded ``solve`` and ``inv`` (NumPy/SciPy reference implementation)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._checks import as_stack, nonfinite_entries, rhs
from ._dtypes import digits_available, digits_lost, result_dtype
from ._info import SolveInfo
from ._lapack import ASSUME, factorize, herm, svd
from ._pinv import lstsq as _lstsq
from ._pinv import pinv as _pinv
from ._policy import Policy, resolve
from ._report import Status, build_error, warn_ill

__all__ = ["inv", "solve"]

_METHOD = {"gen": "lu", "pos": "cholesky", "sym": "ldl", "her": "ldl"}


@dataclasses.dataclass
class _Batch:
    """Per-matrix bookkeeping shared by solve and inv."""

    status: np.ndarray
    rcond: np.ndarray
    pivots: np.ndarray
    method: np.ndarray
    lam: np.ndarray
    nonfinite: tuple[str, list, int] | None = None

    @classmethod
    def empty(cls, batch: tuple[int, ...], method: str) -> _Batch:
        return cls(
            status=np.zeros(batch, dtype=np.int8),
            rcond=np.ones(batch),
            pivots=np.zeros(batch, dtype=np.int64),
            method=np.full(batch, method, dtype=object),
            lam=np.full(batch, np.nan),
        )

    def mark_nonfinite(self, ix, operand: str, where: list, count: int) -> None:
        self.status[ix] = Status.NONFINITE
        self.rcond[ix] = np.nan
        self.method[ix] = "none"
        if self.nonfinite is None:
            self.nonfinite = (operand, where, count)
        else:
            op, w, c = self.nonfinite
            if op == operand:
                self.nonfinite = (op, (w + where)[:20], c + count)


def _assume(assume_a: str) -> str:
    try:
        return ASSUME[assume_a]
    except KeyError:
        raise ValueError(
            f"assume_a must be one of {sorted(set(ASSUME))}, got {assume_a!r}"
        ) from None


def marked(mask: np.ndarray) -> list[tuple[int, ...]]:
    """Batch indices where ``mask`` is true (``[()]`` for a true 0-d mask)."""
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return [()] if bool(mask) else []
    return [tuple(int(i) for i in ix) for ix in np.argwhere(mask)]


def _classify(rc: float, threshold: float) -> int:
    if not np.isfinite(rc) or rc <= 0.0:
        return Status.SINGULAR
    if rc < threshold:
        return Status.ILL_CONDITIONED
    return Status.OK


def _apply_policy(bk: _Batch, pol: Policy, dtype: np.dtype, threshold: float) -> np.ndarray:
    """Raise or warn as the policy says; return the mask of matrices to replace by a fallback."""
    status = bk.status
    on_ill = pol.on_ill
    if on_ill == "ignore" or not np.any(status != Status.OK):
        return np.zeros(status.shape, dtype=bool)

    def err(mask: np.ndarray | None = None):
        st = status if mask is None else np.where(mask, status, Status.OK).astype(np.int8)
        return build_error(st, bk.rcond, dtype, threshold, pivots=bk.pivots,
                           nonfinite=bk.nonfinite)

    hard = (status == Status.NONFINITE) | (status == Status.NOT_POSITIVE_DEFINITE)
    if on_ill == "raise":
        raise err()
    if hard.any():
        raise err(hard)
    fixable = (status == Status.ILL_CONDITIONED) | (status == Status.SINGULAR)
    if on_ill == "warn":
        singular = status == Status.SINGULAR
        if singular.any():
            raise err(singular)
        warn_ill(err(), stacklevel=4)
        return np.zeros(status.shape, dtype=bool)
    return fixable


def _info(bk: _Batch, dtype: np.dtype, threshold: float, scalar: bool, **extra: Any) -> SolveInfo:
    rc = bk.rcond
    cond = np.divide(1.0, rc, out=np.full(rc.shape, np.inf), where=rc > 0)
    cond = np.where(np.isnan(rc), np.nan, cond)
    lost = np.where(np.isnan(rc), np.nan, digits_lost(np.nan_to_num(rc, nan=1.0), dtype))
    has_lam = bool(np.any(bk.method == "tikhonov"))

    def s(v):
        v = np.asarray(v)
        return v.item() if scalar else v

    return SolveInfo(
        rcond=s(rc),
        cond_estimate=s(cond),
        digits_lost=s(lost),
        digits_available=digits_available(dtype),
        threshold=threshold,
        status=Status(int(bk.status)) if scalar else bk.status,
        method=s(bk.method),
        dtype=np.dtype(dtype).name,
        lam=s(bk.lam) if has_lam else None,
        pivots=s(bk.pivots),
        **{k: (s(v) if v is not None else None) for k, v in extra.items()},
    )


def _residuals(A: np.ndarray, X: np.ndarray, B: np.ndarray):
    """Normwise backward error (∞-norms) and relative 2-norm residual, max over columns."""
    with np.errstate(all="ignore"):
        R = B - A @ X
        r_inf = np.abs(R).max(axis=-2) if R.shape[-2] else np.zeros(R.shape[:-2] + R.shape[-1:])
        a_inf = np.abs(A).sum(axis=-1).max(axis=-1) if A.shape[-1] else np.zeros(A.shape[:-2])
        x_inf = np.abs(X).max(axis=-2) if X.shape[-2] else np.zeros(X.shape[:-2] + X.shape[-1:])
        b_inf = np.abs(B).max(axis=-2) if B.shape[-2] else np.zeros(B.shape[:-2] + B.shape[-1:])
        den = a_inf[..., None] * x_inf + b_inf
        eta = np.where(den > 0, r_inf / np.where(den > 0, den, 1.0), 0.0)
        rn = np.linalg.norm(R, axis=-2)
        bn = np.linalg.norm(B, axis=-2)
        rel = np.where(bn > 0, rn / np.where(bn > 0, bn, 1.0), np.where(rn > 0, np.inf, 0.0))
    if eta.shape[-1] == 0:
        return np.zeros(eta.shape[:-1]), np.zeros(eta.shape[:-1])
    return eta.max(axis=-1), rel.max(axis=-1)


def _tikhonov_columns(a: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, float]:
    from ._tikhonov import tikhonov

    out = np.empty_like(B)
    lams = []
    for j in range(B.shape[1]):
        res = tikhonov(a, B[:, j], lam="auto")
        out[:, j] = res.x
        lams.append(res.lam)
    return out, float(np.median(lams)) if lams else np.nan


def solve(
    A: Any,
    b: Any,
    *,
    assume_a: str = "gen",
    min_rcond: float | None = None,
    max_digits_lost: float | None = None,
    on_ill: str | None = None,
    return_info: bool = False,
):
    """Solve ``A x = b`` and refuse to return an answer whose digits are lost.

    Parameters
    ----------
    A:
        ``(..., n, n)`` NumPy array (or torch / TensorFlow / JAX tensor: the answer comes
        back in the same framework).
    b:
        ``(n,)`` — one vector for every matrix — or ``(..., n, k)`` (NumPy 2's rule).
    assume_a:
        ``"gen"`` (LU), ``"sym"`` (LDLᵀ), ``"her"`` (LDLᴴ), ``"pos"`` (Cholesky). The
        structured ones read only the upper triangle, as SciPy does.
    min_rcond, max_digits_lost:
        Override the threshold for this call (default: refuse when more than three quarters
        of the dtype's digits are lost, ``rcond < (eps/2)**0.75``; see
        :func:`numdoctor.linalg.policy`).
    on_ill:
        What to do with a matrix that fails the guard: ``"raise"`` (default)
        :class:`IllConditionedError` / :class:`SingularMatrixError`; ``"warn"``
        (:class:`IllConditionedWarning`, answer returned; singular still raises);
        ``"ignore"`` (no error; see ``info.status``, NaN for singular matrices);
        ``"lstsq"`` / ``"pinv"`` (truncated SVD, singular values below the threshold times
        σ₁ dropped); ``"tikhonov"`` (Tikhonov with ``lam="auto"`` per right-hand side).
        Non-finite input always raises :class:`NonFiniteError` except with ``"ignore"``.
    return_info:
        Also return a :class:`SolveInfo` (rcond, digits lost, backward error, relative
        residual, method used, per-matrix status).

    In a batch every matrix gets its own status; the error names every failing index.
    """
    from ._backends import dispatch

    be = dispatch(A, b)
    if be is not None:
        return be.solve(A, b, assume_a=assume_a, min_rcond=min_rcond,
                        max_digits_lost=max_digits_lost, on_ill=on_ill,
                        return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    return _solve_numpy(A, b, _assume(assume_a), pol, return_info)


#: Batches of at least SMALL_BATCH matrices of order ≤ SMALL_N skip the per-matrix Python
#: loop (≈ 20 µs a matrix): NumPy's batched LAPACK gufuncs give the determinant sign (exact
#: singularity), the inverse (hence the *exact* κ₁ = ‖A‖₁‖A⁻¹‖₁, which at these sizes costs
#: less than the loop) and the solution.
SMALL_N = 16
SMALL_BATCH = 32


def _small_batch(A_b, B_b, X, bk: _Batch, dtype, threshold, b_bad, b_where) -> None:
    n = A_b.shape[-1]
    A = A_b.astype(dtype, copy=False)
    finA = np.isfinite(A).all(axis=(-2, -1))
    for ix in marked(~finA):
        where, count, _ = nonfinite_entries(A[ix])
        bk.mark_nonfinite(ix, "A", [tuple(ix) + w for w in where], count)
    good = finA.copy()
    if b_bad is not None:
        for ix in marked(b_bad & finA):
            bk.mark_nonfinite(ix, "b", b_where[0], b_where[1])
        good &= ~b_bad
    eye = np.eye(n, dtype=dtype)
    with np.errstate(all="ignore"):
        Ac = np.where(good[..., None, None], A, eye)
        sign, _ = np.linalg.slogdet(Ac)
        singular = good & (sign == 0)
        As = np.where(singular[..., None, None], eye, Ac)
        inv = np.linalg.inv(As)
        anorm = np.abs(As).sum(axis=-2).max(axis=-1)
        inorm = np.abs(inv).sum(axis=-2).max(axis=-1)
        prod = anorm * inorm
        rc = np.where(np.isfinite(prod) & (prod > 0), 1.0 / np.where(prod > 0, prod, 1.0), 0.0)
        X[...] = np.linalg.solve(As, B_b.astype(dtype, copy=False))
    status = np.where(rc < threshold, Status.ILL_CONDITIONED, Status.OK)
    status = np.where(rc <= 0, Status.SINGULAR, status)
    status = np.where(singular, Status.SINGULAR, status)
    overflow = (status == Status.OK) & ~np.isfinite(X).all(axis=(-2, -1))
    bk.status[good] = status[good]
    bk.rcond[good] = np.where(singular, 0.0, rc)[good]
    bk.pivots[singular] = -1
    X[~good | singular] = np.nan
    for ix in marked(overflow & good):
        bk.mark_nonfinite(ix, "x", [], int((~np.isfinite(X[ix])).sum()))
        bk.rcond[ix] = rc[ix]


def _solve_numpy(A: Any, b: Any, kind: str, pol: Policy, return_info: bool):
    a = as_stack(A)
    bb, vector, batch = rhs(a.shape, b)
    dtype = result_dtype(a.dtype, bb.dtype)
    threshold = pol.threshold(dtype)
    n = a.shape[-1]
    B = bb.reshape(n, 1) if vector else bb
    k = B.shape[-1]
    A_b = np.broadcast_to(a, (*batch, n, n))
    B_b = np.broadcast_to(B, (*batch, n, k))
    X = np.empty((*batch, n, k), dtype=dtype)
    bk = _Batch.empty(batch, _METHOD[kind])

    b_bad = b_where = None
    if not np.isfinite(B).all():
        where, count, per = nonfinite_entries(B)
        b_bad = np.broadcast_to(per if not vector else np.asarray(True), batch)
        b_where = (where, count)

    small = kind == "gen" and 0 < n <= SMALL_N and int(np.prod(batch)) >= SMALL_BATCH
    if small:
        _small_batch(A_b, B_b, X, bk, dtype, threshold, b_bad, b_where)
    for ix in () if small else np.ndindex(*batch):
        if n == 0:
            continue
        f = _factorize_finite(A_b[ix], ix, kind, dtype, bk, X)
        if f is None:
            continue
        if b_bad is not None and b_where is not None and b_bad[ix]:
            bk.mark_nonfinite(ix, "b", b_where[0], b_where[1])
            X[ix] = np.nan
            continue
        if f.info > 0:
            bk.status[ix] = Status.NOT_POSITIVE_DEFINITE if f.kind == "chol" else Status.SINGULAR
            bk.rcond[ix] = 0.0
            bk.pivots[ix] = f.info
            X[ix] = np.nan
            continue
        x, rc = f.solve_with_rcond(B_b[ix])
        X[ix] = x
        bk.rcond[ix] = rc
        bk.status[ix] = _classify(rc, threshold)
        if bk.status[ix] == Status.OK and not np.isfinite(x).all():
            bk.mark_nonfinite(ix, "x", [], int((~np.isfinite(x)).sum()))
            bk.rcond[ix] = rc

    replace = _apply_policy(bk, pol, dtype, threshold)
    for ix in marked(replace):
        ai = A_b[ix].astype(dtype, copy=False)
        bi = B_b[ix].astype(dtype, copy=False)
        if pol.on_ill == "lstsq":
            X[ix] = _lstsq(ai, bi, rtol=threshold)
        elif pol.on_ill == "pinv":
            X[ix] = _pinv(ai, rtol=threshold) @ bi
        else:
            X[ix], bk.lam[ix] = _tikhonov_columns(ai, bi)
        bk.method[ix] = pol.on_ill

    out = X[..., 0] if vector else X
    if not return_info:
        return out
    eta, rel = _residuals(A_b.astype(dtype, copy=False), X, B_b.astype(dtype, copy=False))
    bad = bk.status == Status.NONFINITE
    eta = np.where(bad, np.nan, eta)
    rel = np.where(bad, np.nan, rel)
    return out, _info(bk, dtype, threshold, scalar=not batch, backward_error=eta,
                      relative_residual=rel)


def inv(
    A: Any,
    *,
    assume_a: str = "gen",
    min_rcond: float | None = None,
    max_digits_lost: float | None = None,
    on_ill: str | None = None,
    return_info: bool = False,
):
    """Inverse of ``A`` (``(..., n, n)``) behind the same guard as :func:`solve`.

    Fallbacks: ``"lstsq"``/``"pinv"`` give the pseudo-inverse truncated at the guard
    threshold; ``"tikhonov"`` gives the least-regularized Tikhonov inverse
    ``V diag(σ/(σ²+λ²)) Uᴴ`` whose gain meets the guard, ``λ = σ₁·threshold/2`` (there is
    no right-hand side to choose λ from). Prefer :func:`solve` when you have ``b``.
    """
    from ._backends import dispatch

    be = dispatch(A)
    if be is not None:
        return be.inv(A, assume_a=assume_a, min_rcond=min_rcond,
                      max_digits_lost=max_digits_lost, on_ill=on_ill, return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    return _inv_numpy(A, _assume(assume_a), pol, return_info)


def _inv_numpy(A: Any, kind: str, pol: Policy, return_info: bool):
    a = as_stack(A)
    dtype = result_dtype(a.dtype)
    threshold = pol.threshold(dtype)
    batch = a.shape[:-2]
    n = a.shape[-1]
    X = np.empty(a.shape, dtype=dtype)
    bk = _Batch.empty(batch, _METHOD[kind])
    for ix in np.ndindex(*batch):
        if n == 0:
            continue
        f = _factorize_finite(a[ix], ix, kind, dtype, bk, X)
        if f is None:
            continue
        if f.info > 0:
            bk.status[ix] = Status.NOT_POSITIVE_DEFINITE if f.kind == "chol" else Status.SINGULAR
            bk.rcond[ix] = 0.0
            bk.pivots[ix] = f.info
            X[ix] = np.nan
            continue
        rc = f.rcond()
        bk.rcond[ix] = rc
        bk.status[ix] = _classify(rc, threshold)
        X[ix] = f.inverse()
        if bk.status[ix] == Status.OK and not np.isfinite(X[ix]).all():
            bk.mark_nonfinite(ix, "x", [], int((~np.isfinite(X[ix])).sum()))
            bk.rcond[ix] = rc
    replace = _apply_policy(bk, pol, dtype, threshold)
    for ix in marked(replace):
        ai = a[ix].astype(dtype, copy=False)
        if pol.on_ill in ("lstsq", "pinv"):
            X[ix] = _pinv(ai, rtol=threshold)
        else:
            u, s, vh = svd(ai, dtype)
            lam = float(s[0]) * threshold / 2.0
            X[ix] = (herm(vh) * (s / (s**2 + lam**2))) @ herm(u)
            bk.lam[ix] = lam
        bk.method[ix] = pol.on_ill
    if not return_info:
        return X
    return X, _info(bk, dtype, threshold, scalar=not batch)


def _factorize_finite(ai, ix, kind, dtype, bk, X):
    """Factorize one matrix of a batch, or mark its slice non-finite (NaN result) and return
    None: shared by solve and inv."""
    f = factorize(ai, kind, dtype)
    if not np.isfinite(f.anorm) and not np.isfinite(ai).all():
        where, count, _ = nonfinite_entries(ai)
        bk.mark_nonfinite(ix, "A", [tuple(ix) + w for w in where], count)
        X[ix] = np.nan
        return None
    return f
