"""Run an operation through the NumPy reference path and convert the results back.

Used by TensorFlow (all operations: the guard must run before ``tf.linalg`` reaches
cuSolverDN) and by torch / JAX for the SVD-based operations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np


def run(
    op: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    to_numpy: Callable[[Any], Any],
    back: Callable[[np.ndarray], Any],
) -> Any:
    """Call ``numdoctor.linalg.<op>`` on host copies; tensors in the result come back."""
    from .. import _cond, _pinv, _solve, _tikhonov

    table: dict[str, Callable[..., Any]] = {
        "solve": _solve.solve,
        "inv": _solve.inv,
        "cond": _cond.cond,
        "cond_estimate": _cond.cond_estimate,
        "pinv": _pinv.pinv,
        "lstsq": _pinv.lstsq,
        "tikhonov": _tikhonov.tikhonov,
    }
    out = table[op](*(to_numpy(a) for a in args), **kwargs)
    return _convert(op, out, back)


def _convert(op: str, out: Any, back: Callable[[np.ndarray], Any]) -> Any:
    if op == "tikhonov":
        return dataclasses.replace(out, x=back(out.x))
    if op in ("cond", "cond_estimate"):
        return out if np.isscalar(out) else back(np.asarray(out))
    if isinstance(out, tuple):
        first, info = out
        return back(first), info
    return back(out)
