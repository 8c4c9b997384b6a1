"""Condition numbers: the O(n²)-after-LU estimate and the exact SVD value."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_stack, nonfinite_entries
from ._dtypes import result_dtype
from ._errors import NonFiniteError
from ._lapack import factorize, svd

__all__ = ["cond", "cond_estimate"]

_NORMS = {1: "1", "1": "1", np.inf: "I", "inf": "I", "I": "I"}

#: float64/complex128 matrices of at least this order are first factorized in single
#: precision (sgetrf runs about twice as fast as dgetrf). The single-precision LU is the exact
#: LU of a matrix within about u₃₂‖A‖ of A, so while κ·u₃₂ stays small the κ it yields is
#: that of A to within a few per cent (measured: 2e-5 to 6e-3 relative at κ₁ = 1e5 to 1e7, n
#: = 1000) — well inside the estimator's own factor-3 margin. Above MIXED_MAX_KAPPA, or when
#: the single-precision copy over- or underflows, the matrix is refactorized in its own
#: precision, as LAPACK's dsgesv falls back to dgetrf.
MIXED_MIN_N = 256
MIXED_MAX_KAPPA = 1e6
_LOWER = {np.dtype(np.float64): np.dtype(np.float32),
          np.dtype(np.complex128): np.dtype(np.complex64)}


def _mixed_estimate(a: np.ndarray, dtype: np.dtype, norm: str) -> float | None:
    """κ from single-precision factors, or ``None`` when they cannot be trusted."""
    lower = _LOWER.get(np.dtype(dtype))
    if lower is None or a.shape[-1] < MIXED_MIN_N:
        return None
    with np.errstate(over="ignore", under="ignore"):
        a32 = np.array(a, dtype=lower, order="F" if a.flags.f_contiguous and not
                       a.flags.c_contiguous else "C")
    f = factorize(a32, "gen", lower, norm=norm, overwrite=True)
    tiny = float(np.finfo(lower).tiny)  # type: ignore[type-var]  # complex: its real part's
    if f.info > 0 or not np.isfinite(f.anorm) or f.anorm < tiny * a.shape[-1]:
        return None
    rc = f.rcond()
    if not rc > 1.0 / MIXED_MAX_KAPPA:
        return None
    return 1.0 / rc


def _raise_nonfinite(a: np.ndarray) -> None:
    where, count, per = nonfinite_entries(a)
    idx = [tuple(int(i) for i in ix) for ix in np.argwhere(per)] if per.ndim else [()]
    raise NonFiniteError(
        f"A has {count} non-finite entr{'y' if count == 1 else 'ies'}"
        + (f" in matrices {idx[:10]}" if per.ndim else "")
        + f", first at {', '.join(map(str, where[:5]))}; the condition number is undefined",
        operand="A",
        where=where,
        count=count,
        indices=idx,
    )


def cond_estimate(A: Any, p: Any = 1) -> Any:
    """Estimate κ_p(A) for p = 1 or ∞ in O(n²) after one LU factorization.

    ``‖A‖`` is computed before factorizing (LAPACK ``lange``), the LU by ``getrf`` and
    ``‖A⁻¹‖`` by LAPACK's ``xLACN2`` iteration on the factors (``gecon`` below n = 256,
    the same iteration driven by multi-threaded ``getrs`` above). From n = 256 on, float64
    and complex128 matrices are factorized in single precision first and refactorized in
    their own precision only when that shows κ > 1e6 (see ``MIXED_MAX_KAPPA``). The
    estimate is a lower bound on κ_p (up to that few-per-cent single-precision
    perturbation), in practice within a factor 3 and usually equal. Singular matrices give
    ``inf``. Batched over leading dimensions: returns an array of the batch shape.
    Raises :class:`NonFiniteError` for NaN/Inf input.
    """
    from ._backends import dispatch

    be = dispatch(A)
    if be is not None:
        return be.cond_estimate(A, p=p)
    try:
        norm = _NORMS[p]
    except (KeyError, TypeError):
        raise ValueError(
            f"cond_estimate supports p=1 or p=inf, got {p!r}; for the 2-norm use "
            "cond(A, exact=True) (κ₁/n ≤ κ₂ ≤ n·κ₁)"
        ) from None
    a = as_stack(A)
    dtype = result_dtype(a.dtype)
    batch = a.shape[:-2]
    out = np.ones(batch)
    if a.shape[-1] == 0:
        return out.item() if not batch else out
    if not np.isfinite(a).all():
        _raise_nonfinite(a)
    for ix in np.ndindex(*batch):
        quick = _mixed_estimate(a[ix], dtype, norm)
        if quick is not None:
            out[ix] = quick
            continue
        f = factorize(a[ix], "gen", dtype, norm=norm)
        if f.info > 0:
            out[ix] = np.inf
            continue
        rc = f.rcond()
        out[ix] = 1.0 / float(rc) if rc > 0 else np.inf  # float: inf past the range
    return out.item() if not batch else out


def cond(A: Any, p: Any = None, *, exact: bool = True) -> Any:
    """Condition number κ_p(A).

    ``exact=True`` (default): p = None/2/-2 from the singular values (one values-only SVD
    per matrix, ``σ_max/σ_min``); other p (1, -1, inf, -inf, 'fro', 'nuc') as
    :func:`numpy.linalg.cond` computes them (explicit inverse). ``exact=False`` forwards to
    :func:`cond_estimate` (p must be 1 or inf). Singular matrices give ``inf``.
    """
    from ._backends import dispatch

    be = dispatch(A)
    if be is not None:
        return be.cond(A, p=p, exact=exact)
    if not exact:
        if p is None or p == 2:
            raise ValueError(
                "there is no cheap 2-norm estimate; use cond_estimate(A, p=1) "
                "(κ₁/n ≤ κ₂ ≤ n·κ₁) or exact=True"
            )
        return cond_estimate(A, p=p)
    a = as_stack(A, square=p not in (None, 2, -2))
    dtype = result_dtype(a.dtype)
    if a.size and not np.isfinite(a).all():
        _raise_nonfinite(a)
    batch = a.shape[:-2]
    out = np.ones(batch)
    if p in (None, 2, -2):
        if min(a.shape[-2:]) == 0:
            return out.item() if not batch else out
        for ix in np.ndindex(*batch):
            _, s, _ = svd(a[ix], dtype, compute_uv=False)
            smax, smin = float(s[0]), float(s[-1])
            if p == -2:
                out[ix] = smin / smax if smax > 0 else np.inf
            else:
                out[ix] = smax / smin if smin > 0 else np.inf
        return out.item() if not batch else out
    with np.errstate(all="ignore"):
        for ix in np.ndindex(*batch):
            try:
                val = float(np.linalg.cond(a[ix].astype(dtype, copy=False), p))
            except np.linalg.LinAlgError:
                val = np.inf
            out[ix] = val if np.isfinite(val) else np.inf
    return out.item() if not batch else out
