"""The guard's threshold and fallback policy, settable per call or per ``with`` block.

Default rule
------------
A square solve or inverse is refused when the estimated loss of accuracy exceeds **three
quarters of the dtype's significant decimal digits** ``d = -log10(u)``, ``u = eps/2`` the unit
roundoff (d = 15.95 for float64, 7.22 for float32), i.e. when

    log10(κ₁) > 0.75·d   ⇔   rcond < u ** 0.75        (rcond = 1 / κ₁ estimate)

which is 11.96 digits lost for float64 (rcond < 1.1e-12) and 5.42 for float32
(rcond < 3.8e-6). The forward error bound ``κ·u`` then still promises about a quarter of the
digits (four significant digits in float64, almost two in float32). SciPy only warns at
``rcond < eps`` — when every digit is gone — which is 5000× later in float64.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from ._dtypes import digits_available, eps

__all__ = ["ON_ILL", "Policy", "default_min_rcond", "get_policy", "policy"]

#: Accepted values of ``on_ill``.
ON_ILL = ("raise", "warn", "ignore", "lstsq", "pinv", "tikhonov")

#: Fraction of the dtype's digits the default rule allows to be lost.
DEFAULT_LOSS_FRACTION = 0.75


def default_min_rcond(dtype: np.dtype) -> float:
    """``u ** 0.75`` with ``u = eps/2``: the default smallest acceptable rcond for ``dtype``."""
    return (eps(dtype) / 2.0) ** DEFAULT_LOSS_FRACTION


@dataclasses.dataclass(frozen=True)
class Policy:
    """Guard settings. ``None`` thresholds mean the dtype-relative default rule.

    Give at most one of ``min_rcond`` (smallest acceptable 1/κ₁) and ``max_digits_lost``
    (largest acceptable log10 κ₁).
    """

    min_rcond: float | None = None
    max_digits_lost: float | None = None
    on_ill: str = "raise"

    def __post_init__(self) -> None:
        _validate(self.min_rcond, self.max_digits_lost, self.on_ill)

    def threshold(self, dtype: np.dtype) -> float:
        """The smallest acceptable rcond for this dtype under this policy."""
        if self.min_rcond is not None:
            return float(self.min_rcond)
        if self.max_digits_lost is not None:
            return 10.0 ** (-float(self.max_digits_lost))
        return default_min_rcond(dtype)

    def describe(self, dtype: np.dtype) -> str:
        thr = self.threshold(dtype)
        allowed = min(-math.log10(thr), digits_available(dtype)) if thr > 0 else math.inf
        avail = digits_available(dtype)
        return f"rcond ≥ {thr:.2g} (at most {allowed:.1f} of {avail:.1f} digits lost)"


def _validate(min_rcond: float | None, max_digits_lost: float | None, on_ill: str) -> None:
    if min_rcond is not None and max_digits_lost is not None:
        raise ValueError("give min_rcond or max_digits_lost, not both")
    if min_rcond is not None and not (0.0 <= float(min_rcond) <= 1.0):
        raise ValueError(f"min_rcond must be in [0, 1], got {min_rcond!r}")
    if max_digits_lost is not None and not float(max_digits_lost) >= 0.0:
        raise ValueError(f"max_digits_lost must be ≥ 0, got {max_digits_lost!r}")
    if on_ill not in ON_ILL:
        raise ValueError(f"on_ill must be one of {ON_ILL}, got {on_ill!r}")


_DEFAULT = Policy()
_CURRENT: contextvars.ContextVar[Policy | None] = contextvars.ContextVar(
    "numdoctor_linalg_policy", default=None
)


def get_policy() -> Policy:
    """The policy in force in this context (thread- and task-local)."""
    return _CURRENT.get() or _DEFAULT


@contextlib.contextmanager
def policy(
    *,
    min_rcond: float | None = None,
    max_digits_lost: float | None = None,
    on_ill: str | None = None,
) -> Iterator[Policy]:
    """Temporarily change the guard for the calls made inside the ``with`` block.

    Unspecified settings are inherited from the enclosing policy; an explicit threshold
    replaces the enclosing one (whichever form it was given in). Per-call arguments still win
    over the policy::

        with numdoctor.linalg.policy(max_digits_lost=8, on_ill="warn"):
            x = numdoctor.linalg.solve(A, b)
    """
    cur = get_policy()
    if min_rcond is not None or max_digits_lost is not None:
        new = Policy(min_rcond=min_rcond, max_digits_lost=max_digits_lost, on_ill=cur.on_ill)
    else:
        new = cur
    if on_ill is not None:
        new = dataclasses.replace(new, on_ill=on_ill)
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)


def resolve(
    min_rcond: float | None, max_digits_lost: float | None, on_ill: str | None
) -> Policy:
    """Merge per-call arguments over the context policy."""
    cur = get_policy()
    if min_rcond is not None or max_digits_lost is not None:
        cur = Policy(min_rcond=min_rcond, max_digits_lost=max_digits_lost, on_ill=cur.on_ill)
    if on_ill is not None:
        cur = dataclasses.replace(cur, on_ill=on_ill)
    return cur
