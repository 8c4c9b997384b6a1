"""Dtype resolution and the digits-of-accuracy arithmetic the guard reports in."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._errors import DTypeError

SUPPORTED: tuple[type[np.generic], ...] = (np.float32, np.float64, np.complex64,
                                           np.complex128)


def result_dtype(*dtypes: np.dtype) -> np.dtype:
    """The LAPACK dtype a computation on these inputs runs in.

    bool and integer inputs are computed in float64 and float16 in float32 (as SciPy does);
    extended precision, objects and strings are refused rather than silently truncated.
    """
    kinds: list[np.dtype[Any]] = []
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt.kind in "biu":
            kinds.append(np.dtype(np.float64))
        elif dt == np.float16:
            kinds.append(np.dtype(np.float32))
        elif dt.type in SUPPORTED:
            kinds.append(dt)
        else:
            raise DTypeError(
                f"unsupported dtype {dt}: numdoctor.linalg computes in float32, float64, "
                "complex64 or complex128 (ints/bools are promoted to float64)",
                dtype=dt,
            )
    out = np.result_type(*kinds) if kinds else np.dtype(np.float64)
    return np.dtype(out)


def real_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.finfo(dt).dtype)


def eps(dt: np.dtype) -> float:
    return float(np.finfo(dt).eps)


def digits_available(dt: np.dtype) -> float:
    """Significant decimal digits of the dtype, -log10(eps/2): 15.95 float64, 7.22 float32."""
    return -math.log10(eps(dt) / 2.0)


def fmt(x: float) -> str:
    """Two significant digits, exponent without '+' or leading zeros (1.2e-14, 8.3e13)."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else ("∞" if x > 0 else "NaN" if x != x else "-∞")
    s = f"{x:.2g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def digits_lost(rcond: float | np.ndarray, dt: np.dtype) -> float | np.ndarray:
    """Estimated decimal digits lost, log10(κ), capped at the digits the dtype has."""
    avail = digits_available(dt)
    with np.errstate(divide="ignore", invalid="ignore"):
        lost = -np.log10(np.asarray(rcond, dtype=np.float64))
    lost = np.where(np.isfinite(lost), lost, avail)
    lost = np.clip(lost, 0.0, avail) + 0.0  # no "-0.0" for rcond == 1
    return float(lost) if lost.ndim == 0 else lost


def dtype_name(dt: np.dtype) -> str:
    return np.dtype(dt).name
