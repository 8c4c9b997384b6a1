"""Error and warning classes of :mod:`numdoctor.linalg`.

Every error derives from :class:`GuardError`, itself a subclass of
:class:`numpy.linalg.LinAlgError`, so existing ``except np.linalg.LinAlgError`` (and, because
NumPy's class derives from ``ValueError``, ``except ValueError``) handlers keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning

__all__ = [
    "DTypeError",
    "GuardError",
    "IllConditionedError",
    "IllConditionedWarning",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "ParameterChoiceError",
    "RegularizationWarning",
    "ShapeError",
    "SingularMatrixError",
]

Index = tuple[int, ...]


class GuardError(np.linalg.LinAlgError):
    """Base class of every error raised by :mod:`numdoctor.linalg`.

    Attributes
    ----------
    indices:
        Batch indices (tuples into the leading dimensions) of the matrices this error is
        about; ``()`` — a single empty tuple — for an unbatched call.
    status:
        For batched calls, the per-matrix status codes (see :class:`~numdoctor.linalg.Status`)
        with the batch shape, so one bad matrix never hides which others are fine or bad.
    """

    def __init__(
        self,
        message: str,
        *,
        indices: Sequence[Index] = (),
        status: np.ndarray | None = None,
    ) -> None:
        super().__init__(message)
        self.indices: list[Index] = [tuple(int(i) for i in ix) for ix in indices]
        self.status = status


class IllConditionedError(GuardError):
    """The matrix is too ill-conditioned for the answer to carry the required accuracy.

    ``rcond`` is the reciprocal 1-norm condition estimate (an array over the batch for
    batched input), ``cond_estimate`` its inverse, ``digits_lost`` the estimated number of
    decimal digits lost and ``digits_available`` the number the dtype has.
    """

    def __init__(
        self,
        message: str,
        *,
        rcond: Any,
        cond_estimate: Any,
        digits_lost: Any,
        digits_available: float,
        threshold: float,
        indices: Sequence[Index] = (),
        status: np.ndarray | None = None,
    ) -> None:
        super().__init__(message, indices=indices, status=status)
        self.rcond = rcond
        self.cond_estimate = cond_estimate
        self.digits_lost = digits_lost
        self.digits_available = digits_available
        self.threshold = threshold


class SingularMatrixError(IllConditionedError):
    """The matrix is singular: a zero pivot, or a condition estimate that overflows.

    A singular matrix is the limit of an ill-conditioned one (``rcond == 0``), so this is a
    subclass of :class:`IllConditionedError`.
    """


class NotPositiveDefiniteError(GuardError):
    """``assume_a="pos"`` was given but the Cholesky factorization found a non-positive pivot."""


class NonFiniteError(GuardError):
    """An input contains NaN or ±Inf.

    ``operand`` names the argument (``"A"`` or ``"b"``); ``where`` lists the offending entries
    as full index tuples (at most the first 20); ``count`` is their total number.
    """

    def __init__(
        self,
        message: str,
        *,
        operand: str,
        where: Sequence[Index],
        count: int,
        indices: Sequence[Index] = (),
        status: np.ndarray | None = None,
    ) -> None:
        super().__init__(message, indices=indices, status=status)
        self.operand = operand
        self.where = [tuple(int(i) for i in ix) for ix in where]
        self.count = int(count)


class ShapeError(GuardError):
    """Operand shapes are incompatible; ``shapes`` maps operand names to their shapes.

    Also a ``ValueError`` (through :class:`numpy.linalg.LinAlgError`).
    """

    def __init__(self, message: str, *, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__(message)
        self.shapes = shapes


class DTypeError(GuardError, TypeError):
    """The dtype is not supported (anything but float32/64, complex64/128, ints and bools)."""

    def __init__(self, message: str, *, dtype: Any) -> None:
        super().__init__(message)
        self.dtype = dtype


class ParameterChoiceError(GuardError):
    """A requested regularization-parameter rule cannot be applied to these data.

    Raised for ``tikhonov(lam="discrepancy")`` when the noise norm is below the part of ``b``
    outside the range of ``A`` or at least ``‖b‖``. ``lam="auto"`` never raises this: it
    records the reason in the diagnostics and falls back to another rule.
    """


class IllConditionedWarning(LinAlgWarning):
    """Issued instead of :class:`IllConditionedError` when ``on_ill="warn"``.

    A subclass of :class:`scipy.linalg.LinAlgWarning`, so existing filters for SciPy's warning
    also catch it. ``info`` carries the same figures the error would.
    """

    def __init__(self, message: str, info: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.info = info or {}


class RegularizationWarning(RuntimeWarning):
    """A regularization-parameter rule that was asked for explicitly looks unreliable."""
