"""Per-matrix status codes and the error / warning messages built from them."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Sequence

import numpy as np

from ._dtypes import digits_available, digits_lost, dtype_name, fmt
from ._errors import (
    GuardError,
    IllConditionedError,
    IllConditionedWarning,
    NonFiniteError,
    NotPositiveDefiniteError,
    SingularMatrixError,
)

__all__ = ["Status", "build_error", "warn_ill"]

_MAX_LISTED = 10


class Status(enum.IntEnum):
    """Outcome of the guard for one matrix; larger is more severe."""

    OK = 0
    ILL_CONDITIONED = 1
    SINGULAR = 2
    NOT_POSITIVE_DEFINITE = 3
    NONFINITE = 4


FIX_HINTS = (
    "fixes: on_ill='tikhonov' (regularized answer, λ chosen from the data), "
    "on_ill='lstsq' or 'pinv' (truncated SVD at the guard threshold), rescale rows/columns, "
    "compute in float64 if you are in float32, or relax the guard with min_rcond=/"
    "max_digits_lost= or numdoctor.linalg.policy(...)"
)


def _avail_text(dtype: np.dtype) -> str:
    # Truncate rather than round so float64 reads 15.9 (of 15.95), never "16.0".
    return f"{np.floor(digits_available(dtype) * 10) / 10:.1f}"


def describe_ill(rcond: float, dtype: np.dtype) -> str:
    lost = min(digits_lost(rcond, dtype), float(_avail_text(dtype)))
    kappa = fmt(1.0 / float(rcond)) if rcond > 0 else "∞"  # float: inf past the range
    return (
        f"rcond≈{fmt(rcond)} (κ₁≈{kappa}), about {lost:.1f} of {_avail_text(dtype)} "
        f"{dtype_name(dtype)} digits lost"
    )


def _describe_one(code: int, rcond: float, pivot: int, dtype: np.dtype) -> str:
    if code == Status.ILL_CONDITIONED:
        return "ill-conditioned: " + describe_ill(rcond, dtype)
    if code == Status.SINGULAR:
        if pivot < 0:
            return (
                "singular: its LU factorization has an exactly zero pivot "
                f"(all {_avail_text(dtype)} {dtype_name(dtype)} digits lost)"
            )
        if pivot > 0:
            return (
                f"singular: pivot {pivot} of the factorization is exactly zero "
                f"(all {_avail_text(dtype)} {dtype_name(dtype)} digits lost)"
            )
        return (
            "singular to working precision: the condition estimate overflows "
            f"(all {_avail_text(dtype)} {dtype_name(dtype)} digits lost)"
        )
    if code == Status.NOT_POSITIVE_DEFINITE:
        return f"not positive definite: the Cholesky pivot {pivot} is not positive"
    if code == Status.NONFINITE:
        return "has NaN or Inf (in A, b or the overflowing answer)"
    return "ok"


def _threshold_text(threshold: float, dtype: np.dtype) -> str:
    avail = digits_available(dtype)
    allowed = min(-np.log10(threshold), avail) if threshold > 0 else avail
    return f"the guard requires rcond ≥ {fmt(threshold)} (at most {allowed:.1f} digits lost)"


def build_error(
    status: np.ndarray,
    rcond: np.ndarray,
    dtype: np.dtype,
    threshold: float,
    *,
    pivots: np.ndarray | None = None,
    nonfinite: tuple[str, Sequence[tuple[int, ...]], int] | None = None,
    what: str = "matrix",
) -> GuardError | None:
    """The error describing every failing matrix, or ``None`` if all passed.

    The class is that of the most severe failure; ``indices`` lists every failing matrix of
    any kind and ``status`` keeps the full per-matrix picture.
    """
    status = np.asarray(status)
    rcond = np.asarray(rcond, dtype=np.float64)
    if pivots is None:
        pivots = np.zeros(status.shape, dtype=np.int64)
    pivots = np.asarray(pivots)
    bad = np.argwhere(status != Status.OK)
    if bad.size == 0 and status.ndim > 0:
        return None
    worst = int(status.max()) if status.size else 0
    if worst == Status.OK:
        return None
    batched = status.ndim > 0
    indices = [tuple(int(i) for i in ix) for ix in bad] if batched else [()]
    lost = digits_lost(rcond, dtype)
    avail = digits_available(dtype)
    # A subnormal rcond has no finite reciprocal: its estimate is inf, not a warning.
    with np.errstate(over="ignore"):
        cond_est = np.divide(1.0, rcond, out=np.full(rcond.shape, np.inf), where=rcond > 0)
    if batched:
        parts = [
            f"[{', '.join(map(str, ix))}] {_describe_one(int(status[ix]), float(rcond[ix]), int(pivots[ix]), dtype)}"  # noqa: E501
            for ix in indices[:_MAX_LISTED]
        ]
        if len(indices) > _MAX_LISTED:
            parts.append(f"... and {len(indices) - _MAX_LISTED} more")
        head = (
            f"{len(indices)} of {status.size} matrices in the batch {status.shape} failed the "
            f"guard: " + "; ".join(parts)
        )
    else:
        head = f"{what} is " + _describe_one(worst, float(rcond), int(pivots), dtype)
    if worst == Status.NONFINITE:
        operand, where, count = nonfinite if nonfinite is not None else ("A", [], 0)
        shown = ", ".join(str(tuple(int(i) for i in w)) for w in list(where)[:5])
        if operand == "x":
            msg = (
                f"{head}; the answer overflows the {dtype_name(dtype)} range ({count} "
                "non-finite entries) although the matrix passed the guard: rescale A or b"
            )
        else:
            msg = (
                f"{head}; {operand} has {count} non-finite entr{'y' if count == 1 else 'ies'}"
                + (f", first at {shown}" if shown else "")
                + "; clean or mask the data before solving"
            )
        return NonFiniteError(
            msg, operand=operand, where=where, count=count, indices=indices,
            status=status if batched else None,
        )
    if worst == Status.NOT_POSITIVE_DEFINITE:
        msg = f"{head}; use assume_a='sym'/'her' or 'gen' if the matrix is indefinite"
        return NotPositiveDefiniteError(msg, indices=indices, status=status if batched else None)
    cls = SingularMatrixError if worst == Status.SINGULAR else IllConditionedError
    msg = f"{head}; {_threshold_text(threshold, dtype)}; {FIX_HINTS}"
    scalar = not batched
    return cls(
        msg,
        rcond=float(rcond) if scalar else rcond,
        cond_estimate=float(cond_est) if scalar else cond_est,
        digits_lost=float(lost) if scalar else lost,
        digits_available=avail,
        threshold=threshold,
        indices=indices,
        status=status if batched else None,
    )


def warn_ill(err: GuardError, stacklevel: int = 3) -> None:
    """Turn a guard error into an :class:`IllConditionedWarning` (``on_ill="warn"``)."""
    info = {
        k: getattr(err, k)
        for k in ("rcond", "cond_estimate", "digits_lost", "digits_available", "indices")
        if hasattr(err, k)
    }
    warnings.warn(IllConditionedWarning(str(err), info), stacklevel=stacklevel)
