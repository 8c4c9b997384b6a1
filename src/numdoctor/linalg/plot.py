"""Diagnostic plots (optional extra: ``pip install 'numdoctor[linalg-plot]'`` for matplotlib).

* :func:`picard` — singular values, |uᵢᴴb| and |uᵢᴴb|/σᵢ: where the coefficients stop
  decaying faster than σᵢ, noise has taken over and regularization must cut.
* :func:`lcurve` — ‖x_λ‖ against ‖Ax_λ − b‖ on log axes with the chosen λ marked.
* :func:`gcv` — the GCV function with the chosen λ (and the other rules' λ) marked.

Each returns the matplotlib ``Axes`` it drew on (a new figure unless ``ax`` is given).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._tikhonov import TikhonovResult

__all__ = ["gcv", "lcurve", "picard"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "numdoctor.linalg.plot needs matplotlib: pip install 'numdoctor[linalg-plot]'"
        ) from e
    _, ax = plt.subplots()
    return ax


def _candidates(result: TikhonovResult) -> dict[str, float]:
    d = result.diagnostics
    return {} if d is None else {k: v for k, v in d.candidates.items() if v != result.lam}


def picard(A: Any, b: Any = None, *, ax: Any = None) -> Any:
    """Picard plot of ``(A, b)`` or of a :class:`TikhonovResult` (then λ is drawn too)."""
    ax = _axes(ax)
    lam = None
    if isinstance(A, TikhonovResult):
        s, beta, lam = A.singular_values, A.beta, A.lam
    else:
        from ._lapack import svd

        a = np.asarray(A)
        bb = np.asarray(b)
        dtype = np.result_type(a.dtype, bb.dtype, np.float64)
        u, s, _ = svd(a, np.dtype(dtype))
        beta = u.conj().T @ bb
    i = np.arange(1, s.size + 1)
    ab = np.abs(beta[: s.size])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s > 0, ab / s, np.nan)
    ax.semilogy(i, s, ".-", label="σᵢ")
    ax.semilogy(i, ab, "x", label="|uᵢᴴb|")
    ax.semilogy(i, ratio, "o", mfc="none", label="|uᵢᴴb| / σᵢ")
    if lam is not None and lam > 0:
        ax.axhline(lam, ls="--", color="k", lw=0.8, label=f"λ = {lam:.3g}")
    ax.set_xlabel("i")
    ax.set_title("Picard plot")
    ax.legend()
    return ax


def lcurve(result: TikhonovResult, *, ax: Any = None) -> Any:
    """L-curve (log ‖r‖, log ‖x‖) of a Tikhonov result with the chosen λ marked."""
    ax = _axes(ax)
    ax.loglog(result.residual_norms, result.solution_norms, "-", lw=1.2)
    ax.loglog([result.residual_norm], [result.solution_norm], "o", ms=8,
              label=f"{result.method}: λ = {result.lam:.3g}")
    for name, lam in _candidates(result).items():
        ev = result.evaluate(lam)
        ax.loglog(ev["residual_norm"], ev["solution_norm"], "x", label=f"{name}: λ = {lam:.3g}")
    ax.set_xlabel("residual norm ‖Ax − b‖")
    ax.set_ylabel("solution norm ‖x‖")
    ax.set_title("L-curve")
    ax.legend(fontsize="small")
    return ax


def gcv(result: TikhonovResult, *, ax: Any = None) -> Any:
    """GCV function of a Tikhonov result with the chosen λ marked."""
    ax = _axes(ax)
    ax.loglog(result.lam_grid, result.gcv_values, "-", lw=1.2)
    ax.axvline(result.lam, color="k", ls="--", lw=0.8,
               label=f"{result.method}: λ = {result.lam:.3g}")
    for name, lam in _candidates(result).items():
        ax.loglog([lam], result.evaluate(lam)["gcv"], "x", label=f"{name}: λ = {lam:.3g}")
    ax.set_xlabel("λ")
    ax.set_ylabel("G(λ)")
    ax.set_title("GCV")
    ax.legend(fontsize="small")
    return ax
