"""Input validation: array conversion, shape rules and locating non-finite entries."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import ShapeError

_MAX_WHERE = 20


def as_stack(A: Any, name: str = "A", *, square: bool = True) -> np.ndarray:
    """``A`` as an array of shape ``(..., m, n)`` (square unless told otherwise)."""
    a = np.asarray(A)
    if a.ndim < 2:
        raise ShapeError(
            f"{name} must have at least 2 dimensions (..., n, n), got shape {a.shape}",
            shapes={name: a.shape},
        )
    if square and a.shape[-1] != a.shape[-2]:
        raise ShapeError(
            f"{name} must be square in its last two dimensions, got shape {a.shape}",
            shapes={name: a.shape},
        )
    return a


def as_matrix(A: Any, name: str = "A") -> np.ndarray:
    """``A`` as a single 2-D (not necessarily square) matrix."""
    a = np.asarray(A)
    if a.ndim != 2:
        raise ShapeError(
            f"{name} must be a 2-D matrix, got shape {a.shape}", shapes={name: a.shape}
        )
    return a


def rhs(a_shape: tuple[int, ...], B: Any) -> tuple[np.ndarray, bool, tuple[int, ...]]:
    """Validate a right-hand side against ``A``'s shape using NumPy 2's rule.

    A 1-D ``b`` of length n is one vector shared by every matrix in the batch; otherwise ``b``
    is ``(..., n, k)`` and its leading dimensions broadcast against ``A``'s. Returns the
    array, whether it was a vector, and the broadcast batch shape.
    """
    b = np.asarray(B)
    if b.ndim == 0:
        raise ShapeError(
            f"b must be (n,) or (..., n, k), got a scalar; A has shape {a_shape}",
            shapes={"A": a_shape, "b": b.shape},
        )
    vector = b.ndim == 1
    rows = b.shape[0] if vector else b.shape[-2]
    if rows != a_shape[-2]:
        want = f"({a_shape[-2]},) or (..., {a_shape[-2]}, k)"
        raise ShapeError(
            f"b has shape {b.shape}, incompatible with A of shape {a_shape}: expected {want}",
            shapes={"A": a_shape, "b": b.shape},
        )
    try:
        batch = np.broadcast_shapes(a_shape[:-2], () if vector else b.shape[:-2])
    except ValueError:
        raise ShapeError(
            f"batch dimensions of A {a_shape[:-2]} and b {b.shape[:-2]} do not broadcast "
            f"(A has shape {a_shape}, b has shape {b.shape})",
            shapes={"A": a_shape, "b": b.shape},
        ) from None
    return b, vector, batch


def nonfinite_entries(a: np.ndarray) -> tuple[list[tuple[int, ...]], int, np.ndarray]:
    """Where ``a`` is NaN/Inf: the first entries, their count and a mask over all but the
    last ``min(ndim, 2)`` axes (per matrix, or per vector for 1-D input)."""
    bad = ~np.isfinite(a)
    count = int(bad.sum())
    where = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)[:_MAX_WHERE]]
    tail = min(a.ndim, 2)
    per = bad.any(axis=tuple(range(a.ndim - tail, a.ndim))) if a.ndim else bad
    return where, count, per
