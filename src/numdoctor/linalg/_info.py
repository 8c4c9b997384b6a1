"""The info object returned by ``solve(..., return_info=True)`` and ``inv(...)``."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._report import Status, build_error


@dataclasses.dataclass(frozen=True)
class SolveInfo:
    """What the guard measured and did.

    For batched input every per-matrix field is an array with the batch shape; for a single
    matrix it is a scalar. Arrays are NumPy arrays except for the torch backend, which keeps
    them as tensors on the input's device so that nothing forces a host synchronisation
    until you look (``ok``, ``raise_for_status()``).

    Attributes
    ----------
    rcond:
        Reciprocal 1-norm condition estimate (LAPACK ``xLACN2`` iteration on the factors);
        0 for a singular matrix.
    cond_estimate:
        ``1 / rcond`` (``inf`` when singular). A lower bound on κ₁, usually within 3×.
    digits_lost, digits_available:
        ``log10(cond_estimate)`` capped at the dtype's ``-log10(eps)``.
    threshold:
        The smallest rcond the guard accepted in this call.
    status:
        :class:`~numdoctor.linalg.Status` code(s).
    method:
        What produced the answer: ``"lu"``, ``"cholesky"``, ``"ldl"``, or the fallback
        ``"lstsq"``, ``"pinv"``, ``"tikhonov"``; ``"none"`` where nothing could be computed.
    backward_error:
        Normwise backward error ‖b − Ax‖∞ / (‖A‖∞‖x‖∞ + ‖b‖∞) (max over right-hand sides);
        ``None`` for ``inv``.
    relative_residual:
        ‖b − Ax‖₂ / ‖b‖₂ (max over right-hand sides); ``None`` for ``inv``.
    lam:
        The Tikhonov λ used where ``method == "tikhonov"`` (NaN elsewhere), else ``None``.
    """

    rcond: Any
    cond_estimate: Any
    digits_lost: Any
    digits_available: float
    threshold: float
    status: Any
    method: Any
    dtype: str
    backward_error: Any = None
    relative_residual: Any = None
    lam: Any = None
    pivots: Any = None

    @property
    def ok(self) -> bool:
        """True when every matrix passed the guard."""
        return bool(np.all(_host(self.status) == Status.OK))

    def raise_for_status(self) -> None:
        """Raise the error the guard would have raised with ``on_ill="raise"``, if any."""
        status = _host(self.status)
        err = build_error(
            status,
            _host(self.rcond),
            np.dtype(self.dtype),
            self.threshold,
            pivots=None if self.pivots is None else _host(self.pivots),
        )
        if err is not None:
            raise err


def _host(x: Any) -> np.ndarray:
    """A NumPy view of a backend array (one device sync for torch/jax tensors)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
