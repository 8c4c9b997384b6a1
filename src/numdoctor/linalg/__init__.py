"""Guarded linear algebra that refuses to return garbage.

* :func:`solve`, :func:`inv` — LU / Cholesky / LDLᵀ with a condition estimate on the factors;
  refuse (or warn, or fall back to :func:`lstsq`, :func:`pinv`, :func:`tikhonov`) when more
  than three quarters of the dtype's digits would be lost (``rcond < u**0.75``, u = eps/2).
* :func:`cond_estimate` — κ₁ / κ∞ in O(n²) after one LU; :func:`cond` — exact value.
* :func:`pinv`, :func:`lstsq` — SVD with one documented cutoff and adapters for the
  NumPy / SciPy / torch / JAX / TensorFlow conventions.
* :func:`tikhonov` — one SVD, λ from GCV, robust GCV, L-curve, quasi-optimality or the
  discrepancy principle, and an ``"auto"`` rule that checks them against each other.
* :func:`policy` — change the threshold or the fallback for a ``with`` block.
* :mod:`~numdoctor.linalg.problems` — classical ill-posed test problems;
  :mod:`~numdoctor.linalg.plot` — Picard, L-curve and GCV plots (needs matplotlib).

NumPy arrays use SciPy's LAPACK; torch, TensorFlow and JAX tensors are recognized by type
(without importing the framework) and answered in kind. This subpackage imports nothing
else from numdoctor.
"""

from __future__ import annotations

from . import plot, problems
from ._cond import cond, cond_estimate
from ._errors import (
    DTypeError,
    GuardError,
    IllConditionedError,
    IllConditionedWarning,
    NonFiniteError,
    NotPositiveDefiniteError,
    ParameterChoiceError,
    RegularizationWarning,
    ShapeError,
    SingularMatrixError,
)
from ._info import SolveInfo
from ._pinv import CONVENTIONS, LstsqInfo, PinvInfo, lstsq, pinv
from ._policy import Policy, default_min_rcond, get_policy, policy
from ._report import Status
from ._solve import inv, solve
from ._tikhonov import RULES, TikhonovDiagnostics, TikhonovResult, tikhonov

__all__ = [
    "CONVENTIONS",
    "RULES",
    "DTypeError",
    "GuardError",
    "IllConditionedError",
    "IllConditionedWarning",
    "LstsqInfo",
    "NonFiniteError",
    "NotPositiveDefiniteError",
    "ParameterChoiceError",
    "PinvInfo",
    "Policy",
    "RegularizationWarning",
    "ShapeError",
    "SingularMatrixError",
    "SolveInfo",
    "Status",
    "TikhonovDiagnostics",
    "TikhonovResult",
    "cond",
    "cond_estimate",
    "default_min_rcond",
    "get_policy",
    "inv",
    "lstsq",
    "pinv",
    "plot",
    "policy",
    "problems",
    "solve",
    "tikhonov",
]
