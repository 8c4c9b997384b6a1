"""TensorFlow backend: the guard runs on the host, before anything reaches ``tf.linalg``.

On GPU ``tf.linalg.solve``/``inv`` can return garbage or fail inside cuSolverDN on a
near-singular matrix (tensorflow#94657, #117640, #13558). Here the matrix is factorized and
its condition estimated by LAPACK on the host; a matrix that fails the guard gets our error
(or fallback), and the answer is placed back on the input's device. Eager tensors and
variables only: inside ``tf.function`` there is no value to check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import DTypeError
from . import _host


def _is_tf(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] in ("tensorflow", "keras")


def _to_numpy(x: Any) -> Any:
    if not _is_tf(x):
        return x
    if not hasattr(x, "numpy"):
        raise DTypeError(
            "symbolic TensorFlow tensor (inside tf.function?): numdoctor.linalg checks "
            "values, call it eagerly or wrap it in tf.py_function",
            dtype=getattr(x, "dtype", None),
        )
    return x.numpy()


def _run(op: str, *args: Any, **kwargs: Any) -> Any:
    import tensorflow as tf

    device = next((getattr(a, "device", None) for a in args if _is_tf(a)), None) or None

    def back(arr: np.ndarray) -> Any:
        if device:
            with tf.device(device):
                return tf.identity(tf.convert_to_tensor(arr))
        return tf.convert_to_tensor(arr)

    return _host.run(op, args, kwargs, _to_numpy, back)


def solve(A, b, **kw):
    return _run("solve", A, b, **kw)


def inv(A, **kw):
    return _run("inv", A, **kw)


def cond_estimate(A, **kw):
    return _run("cond_estimate", A, **kw)


def cond(A, **kw):
    return _run("cond", A, **kw)


def pinv(A, **kw):
    return _run("pinv", A, **kw)


def lstsq(A, b, **kw):
    return _run("lstsq", A, b, **kw)


def tikhonov(A, b, **kw):
    return _run("tikhonov", A, b, **kw)
