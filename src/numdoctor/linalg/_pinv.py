"""Pseudo-inverse and rank-revealing least squares with one documented cutoff rule.

numdoctor rule
--------------
Singular values ``σᵢ > max(atol, rtol·σ₁)`` are kept, the others treated as zero, with
defaults ``atol = 0`` and ``rtol = max(m, n)·eps(dtype)``. Adapters reproduce the other
libraries' cutoffs exactly (``convention=``):

==============  ==================================  ======================================
convention      cutoff                              defaults
==============  ==================================  ======================================
``numdoctor``   max(atol, rtol·σ₁)                  atol 0, rtol max(m,n)·eps
``numpy``       rtol·σ₁ (``rcond`` in numpy < 2)    rtol 1e-15 (NumPy's dtype-blind default)
``scipy``       atol + rtol·σ₁                      atol 0, rtol max(m,n)·eps
``torch``       max(atol, rtol·σ₁)                  rtol max(m,n)·eps, but 0 if atol > 0
``jax``         rtol·σ₁                             rtol 10·max(m,n)·eps
``tensorflow``  rtol·σ₁                             rtol 10·max(m,n)·eps
==============  ==================================  ======================================
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._checks import as_matrix, as_stack, nonfinite_entries
from ._dtypes import eps, result_dtype
from ._errors import NonFiniteError, ShapeError
from ._lapack import herm, svd

__all__ = ["CONVENTIONS", "LstsqInfo", "PinvInfo", "cutoff", "lstsq", "pinv"]

CONVENTIONS = ("numdoctor", "numpy", "scipy", "torch", "jax", "tensorflow")


@dataclasses.dataclass(frozen=True)
class PinvInfo:
    """Numerical rank, the cutoff applied and the singular values (per matrix if batched)."""

    rank: Any
    cutoff: Any
    singular_values: Any
    convention: str


@dataclasses.dataclass(frozen=True)
class LstsqInfo:
    """Rank-revealing least-squares details.

    ``residual_norm`` is ‖b − Ax‖₂ per right-hand side; ``rank_deficient`` tells whether any
    singular value was cut.
    """

    rank: int
    cutoff: float
    singular_values: np.ndarray
    residual_norm: Any
    rank_deficient: bool
    convention: str


def cutoff(
    s_max: float,
    shape: tuple[int, int],
    dtype: np.dtype,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    convention: str = "numdoctor",
) -> float:
    """The absolute singular-value cutoff of ``convention`` (values ``> cutoff`` are kept)."""
    m, n = shape
    e = eps(dtype)
    mn = max(m, n)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if (rtol is not None and rtol < 0) or (atol is not None and atol < 0):
        raise ValueError("rtol and atol must be non-negative")
    if convention in ("numpy", "jax", "tensorflow") and atol is not None:
        raise ValueError(f"the {convention} convention has no atol; use rtol")
    if convention == "numdoctor":
        r = mn * e if rtol is None else rtol
        return max(atol or 0.0, r * s_max)
    if convention == "numpy":
        return (1e-15 if rtol is None else rtol) * s_max
    if convention == "scipy":
        r = mn * e if rtol is None else rtol
        return (atol or 0.0) + r * s_max
    if convention == "torch":
        if rtol is None:
            r = 0.0 if (atol is not None and atol > 0) else mn * e
        else:
            r = rtol
        return max(atol or 0.0, r * s_max)
    return (10 * mn * e if rtol is None else rtol) * s_max


def _overflow_floor(shape: tuple[int, int], dtype: np.dtype) -> float:
    # Singular values whose reciprocal (summed over up to max(m, n) terms) would overflow
    # cannot be inverted in this dtype; they are treated as zero like the cut ones.
    return max(shape) / float(np.finfo(dtype).max)


def _check_result(x: np.ndarray, what: str) -> None:
    if not np.isfinite(x).all():
        count = int((~np.isfinite(x)).sum())
        raise NonFiniteError(
            f"the {what} overflows the {x.dtype} range ({count} non-finite entries); "
            "rescale A (and b)",
            operand="x", where=[], count=count,
        )


def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        where, count, per = nonfinite_entries(a)
        raise NonFiniteError(
            f"{name} has {count} non-finite entr{'y' if count == 1 else 'ies'}, first at "
            f"{', '.join(map(str, where[:5]))}; clean or mask the data first",
            operand=name,
            where=where,
            count=count,
            indices=[tuple(ix) for ix in np.argwhere(per)] if per.ndim else [()],
        )


def _pinv_one(a: np.ndarray, dtype: np.dtype, rtol, atol, convention):
    m, n = a.shape
    if a.size == 0:
        return np.zeros((n, m), dtype=dtype), 0, 0.0, np.zeros(0, dtype=np.finfo(dtype).dtype)
    u, s, vh = svd(a, dtype)
    cut = cutoff(float(s[0]) if s.size else 0.0, (m, n), dtype, rtol=rtol, atol=atol,
                 convention=convention)
    keep = s > max(cut, _overflow_floor((m, n), dtype))
    r = int(keep.sum())
    with np.errstate(over="ignore", invalid="ignore"):
        inv = (herm(vh[:r]) / s[:r]) @ herm(u[:, :r])
    _check_result(inv, "pseudo-inverse")
    return inv.astype(dtype, copy=False), r, cut, s


def pinv(
    A: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    convention: str = "numdoctor",
    return_info: bool = False,
):
    """Moore-Penrose pseudo-inverse by SVD with a documented cutoff (batched over ``...``).

    See the module docstring for the cutoff of each ``convention``; the default keeps
    ``σᵢ > max(atol, rtol·σ₁)`` with ``rtol = max(m, n)·eps``.
    """
    from ._backends import dispatch

    be = dispatch(A)
    if be is not None:
        return be.pinv(A, rtol=rtol, atol=atol, convention=convention, return_info=return_info)
    a = as_stack(A, square=False)
    dtype = result_dtype(a.dtype)
    cutoff(1.0, a.shape[-2:], dtype, rtol=rtol, atol=atol, convention=convention)  # validate
    _check_finite(a, "A")
    batch = a.shape[:-2]
    m, n = a.shape[-2:]
    out = np.empty((*batch, n, m), dtype=dtype)
    ranks = np.zeros(batch, dtype=np.int64)
    cuts = np.zeros(batch)
    svals = np.zeros((*batch, min(m, n)), dtype=np.finfo(dtype).dtype)
    for ix in np.ndindex(*batch):
        out[ix], ranks[ix], cuts[ix], svals[ix] = _pinv_one(a[ix], dtype, rtol, atol, convention)
    if not return_info:
        return out
    scalar = not batch
    info = PinvInfo(
        rank=int(ranks) if scalar else ranks,
        cutoff=float(cuts) if scalar else cuts,
        singular_values=svals,
        convention=convention,
    )
    return out, info


def lstsq(
    A: Any,
    b: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    convention: str = "numdoctor",
    return_info: bool = False,
):
    """Minimum-norm least-squares solution with rank revealed by the SVD cutoff.

    ``b`` is ``(m,)`` or ``(m, k)``. Singular values at or below the cutoff (see
    :func:`pinv`) are treated as zero, so noise in those directions is not amplified.
    With ``return_info=True`` also returns a :class:`LstsqInfo` (rank, cutoff, singular
    values, residual norms, whether the matrix was rank deficient).
    """
    from ._backends import dispatch

    be = dispatch(A, b)
    if be is not None:
        return be.lstsq(A, b, rtol=rtol, atol=atol, convention=convention,
                        return_info=return_info)
    a = as_matrix(A)
    bb = np.asarray(b)
    if bb.ndim not in (1, 2) or bb.shape[0] != a.shape[0]:
        raise ShapeError(
            f"b has shape {bb.shape}, incompatible with A of shape {a.shape}: expected "
            f"({a.shape[0]},) or ({a.shape[0]}, k)",
            shapes={"A": a.shape, "b": bb.shape},
        )
    dtype = result_dtype(a.dtype, bb.dtype)
    cutoff(1.0, a.shape, dtype, rtol=rtol, atol=atol, convention=convention)
    _check_finite(a, "A")
    _check_finite(bb, "b")
    m, n = a.shape
    vec = bb.ndim == 1
    B = bb.reshape(m, -1).astype(dtype, copy=False)
    if a.size == 0:
        x = np.zeros((n, B.shape[1]), dtype=dtype)
        s = np.zeros(0, dtype=np.finfo(dtype).dtype)
        r, cut = 0, 0.0
    else:
        u, s, vh = svd(a, dtype)
        cut = cutoff(float(s[0]), a.shape, dtype, rtol=rtol, atol=atol, convention=convention)
        r = int((s > max(cut, _overflow_floor(a.shape, dtype))).sum())
        with np.errstate(over="ignore", invalid="ignore"):
            coef = (herm(u[:, :r]) @ B) / s[:r, None]
            x = herm(vh[:r]) @ coef
        _check_result(x, "least-squares solution")
    x = x.astype(dtype, copy=False)
    out = x[:, 0] if vec else x
    if not return_info:
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        res = np.linalg.norm(B - a.astype(dtype, copy=False) @ x, axis=0)
    info = LstsqInfo(
        rank=r,
        cutoff=float(cut),
        singular_values=s,
        residual_norm=float(res[0]) if vec else res,
        rank_deficient=r < min(m, n),
        convention=convention,
    )
    return out, info
