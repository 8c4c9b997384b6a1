"""Standard-form Tikhonov regularization with an automatically chosen λ that reports doubt.

``x_λ = argmin ‖Ax - b‖² + λ²‖x‖²``, computed from one thin SVD (gesdd) and then O(n) work
per trial λ for every rule. See :func:`tikhonov` for the ``"auto"`` decision procedure.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from . import _rules as R
from ._checks import as_matrix
from ._dtypes import eps, result_dtype
from ._errors import NonFiniteError, ParameterChoiceError, RegularizationWarning, ShapeError
from ._lapack import matvec, svd

__all__ = ["RULES", "TikhonovDiagnostics", "TikhonovResult", "tikhonov"]

RULES = ("auto", "gcv", "rgcv", "lcurve", "quasi", "discrepancy")

#: Rules whose λ spread more than this many decades are reported as disagreeing.
DISAGREE_DECADES = 2.0
#: The L-curve only votes with robust GCV when their λ are within this many decades; beyond,
#: the L-curve (like quasi-optimality) is in its known undersmoothing mode (heat, phillips).
MEDIAN_MAX_DECADES = 2.0


@dataclasses.dataclass(frozen=True)
class TikhonovDiagnostics:
    """Why the λ was trusted or not.

    Attributes
    ----------
    gcv_flat, gcv_flat_decades:
        GCV stays within 10 % of its minimum over ``gcv_flat_decades`` decades of λ; flat
        when more than 3 (typical of severely ill-posed problems, where GCV's minimum is
        decided by noise).
    gcv_at_edge:
        GCV's minimum lies at the end of the λ range searched.
    gcv_competing_minima:
        Other local GCV minima within 10 % of the best and at least a decade away.
    lcurve_corners, lcurve_at_edge:
        Number of L-curve corners (local curvature maxima ≥ half the largest); 1 is a clear
        corner.
    discrepancy_attainable:
        ``None`` without a noise norm; otherwise whether ρ(λ) = τ·δ has a solution.
    noise_estimate:
        Noise norm estimated from the data (Picard tail or the residual outside range(A)),
        for comparison with yours; not used to choose λ.
    candidates:
        λ of every rule evaluated.
    spread_decades, rules_disagree:
        log10(max/min) over the noise-free rules' λ; disagreement above 2 decades.
    reliable:
        False when the rule actually used was itself flagged (e.g. every rule doubtful).
    reasons:
        Human-readable account of each fallback taken.
    """

    gcv_flat: bool
    gcv_flat_decades: float
    gcv_at_edge: bool
    gcv_competing_minima: int
    lcurve_corners: int
    lcurve_at_edge: bool
    discrepancy_attainable: bool | None
    noise_estimate: float
    candidates: dict[str, float]
    spread_decades: float
    rules_disagree: bool
    reliable: bool
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TikhonovResult:
    """Solution and everything needed to judge it or plot it (:mod:`numdoctor.linalg.plot`).

    ``x``, ``lam``, ``method`` (the rule actually used: ``"discrepancy"``, ``"gcv"``,
    ``"rgcv"``, ``"lcurve"``, ``"quasi"``, ``"median(lcurve,rgcv,quasi)"``, ``"fixed"`` or
    ``"trivial"``), ``requested`` (what was asked for), ``residual_norm`` ‖Ax−b‖,
    ``solution_norm`` ‖x‖, ``dof`` = Σfᵢ (effective degrees of freedom),
    ``diagnostics``; the Picard data ``singular_values``/``beta`` and the curves over
    ``lam_grid``.
    """

    x: np.ndarray
    lam: float
    method: str
    requested: str
    residual_norm: float
    solution_norm: float
    dof: float
    diagnostics: TikhonovDiagnostics | None
    singular_values: np.ndarray
    beta: np.ndarray
    lam_grid: np.ndarray
    residual_norms: np.ndarray
    solution_norms: np.ndarray
    gcv_values: np.ndarray
    curvature: np.ndarray
    incompatible_norm: float = 0.0
    shape: tuple[int, int] = (0, 0)

    def evaluate(self, lam: float | np.ndarray) -> dict[str, np.ndarray]:
        """Residual norm, solution norm and GCV value at other λ (O(n) each, no refit)."""
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        s = self.singular_values[self.singular_values > 0]
        if s.size == 0:
            z = np.zeros(lam.shape)
            return {"residual_norm": z + self.residual_norm, "solution_norm": z, "gcv": z}
        b2 = np.abs(self.beta[: s.size]) ** 2
        f = s**2 / (s**2 + lam[:, None] ** 2)
        rho2 = ((1 - f) ** 2 * b2).sum(1) + self.incompatible_norm**2
        eta2 = (f**2 * b2 / s**2).sum(1)
        m = self.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            gcv = rho2 / (m - f.sum(1)) ** 2
        return {"residual_norm": np.sqrt(rho2), "solution_norm": np.sqrt(eta2), "gcv": gcv}


def _div(z: np.ndarray, d: float) -> np.ndarray:
    # Complex division by a subnormal real goes through a complex reciprocal that overflows;
    # dividing the parts separately does not.
    if np.iscomplexobj(z):
        return z.real / d + 1j * (z.imag / d)
    return z / d


def _geometric_median(values: list[float]) -> float:
    return float(np.exp(np.median(np.log(values))))


def _validate(A: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    a = as_matrix(A)
    bb = np.asarray(b)
    if bb.ndim != 1 or bb.shape[0] != a.shape[0]:
        raise ShapeError(
            f"tikhonov needs b of shape ({a.shape[0]},) for A of shape {a.shape}, got "
            f"{bb.shape} (solve one right-hand side at a time: λ depends on b)",
            shapes={"A": a.shape, "b": bb.shape},
        )
    dtype = result_dtype(a.dtype, bb.dtype)
    for name, arr in (("A", a), ("b", bb)):
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))
            raise NonFiniteError(
                f"{name} has {len(bad)} non-finite entr{'y' if len(bad) == 1 else 'ies'}, "
                f"first at {tuple(int(i) for i in bad[0])}; clean or mask the data first",
                operand=name,
                where=[tuple(int(i) for i in ix) for ix in bad[:20]],
                count=len(bad),
            )
    return a, bb, dtype


def tikhonov(
    A: Any,
    b: Any,
    *,
    lam: str | float = "auto",
    noise_norm: float | None = None,
    tau: float = 1.0,
) -> TikhonovResult:
    """Tikhonov-regularized least squares ``min ‖Ax − b‖² + λ²‖x‖²`` with λ chosen for you.

    ``lam`` is a number, or a rule:

    ``"gcv"``          generalized cross-validation.
    ``"rgcv"``         robust GCV (γ = 0.1), which penalizes GCV's undersmoothing.
    ``"lcurve"``       maximum curvature of the L-curve.
    ``"quasi"``        quasi-optimality, minimum of ‖λ·dx/dλ‖.
    ``"discrepancy"``  ρ(λ) = τ·``noise_norm`` (needs the noise norm ‖e‖ of ``b``); raises
                       :class:`ParameterChoiceError` if no λ attains it.
    ``"auto"``         (default) decided as follows, every step recorded in
                       ``result.diagnostics.reasons``:

        1. With ``noise_norm``: the discrepancy principle, if attainable; otherwise the
           reason is recorded and the steps below are used.
        2. GCV is checked for a flat minimum (within 10 % over > 3 decades), a minimum at
           the edge of the searched range and competing minima a decade or more away.
           If GCV is sound, robust GCV is used (plain GCV still undersmooths; RGCV differs
           from it only by a penalty on small λ).
        3. If GCV is unsound and the L-curve has exactly one corner within two decades of
           the robust-GCV λ, the geometric median of the L-curve, robust-GCV and
           quasi-optimality λ is used (quasi-optimality is left out if its minimum is at the
           range edge): each rule fails on different problems, and the median outvotes the
           one that does. A corner further away is the L-curve's known undersmoothing
           mode, and robust GCV is kept.
        4. Otherwise robust GCV, with ``diagnostics.reliable = False``.

    GCV-type minima are searched only where at least 3 residual degrees of freedom
    (m − Σfᵢ) remain; a deeper minimum below that is reported and ignored.

    One thin SVD, then O(n) per λ on a 200-point log grid from max(σ_min, 16·eps·σ₁) to σ₁
    and a bounded 1-D refinement between grid neighbours. ``A`` is one ``(m, n)`` matrix and
    ``b`` one ``(m,)`` vector; complex input is supported.
    """
    from ._backends import dispatch

    be = dispatch(A, b)
    if be is not None:
        return be.tikhonov(A, b, lam=lam, noise_norm=noise_norm, tau=tau)
    requested = lam if isinstance(lam, str) else "fixed"
    if isinstance(lam, str) and lam not in RULES:
        raise ValueError(f"lam must be a number or one of {RULES}, got {lam!r}")
    if not isinstance(lam, str) and not (float(lam) >= 0 and math.isfinite(float(lam))):
        raise ValueError(f"a fixed lam must be a finite number ≥ 0, got {lam!r}")
    if lam == "discrepancy" and noise_norm is None:
        raise ValueError("lam='discrepancy' needs noise_norm (the norm ‖e‖ of the noise in b)")
    if noise_norm is not None and not (float(noise_norm) >= 0 and math.isfinite(noise_norm)):
        raise ValueError(f"noise_norm must be a finite number ≥ 0, got {noise_norm!r}")
    a, bb, dtype = _validate(A, b)
    m, n = a.shape
    bb = bb.astype(dtype, copy=False)
    bmax = float(np.abs(bb).max()) if bb.size else 0.0
    if a.size == 0 or bmax == 0.0:
        return _trivial(m, n, dtype, requested, 0.0)
    # Overflow-safe ‖b‖ (squares of 1e200 would overflow). Not np.linalg.norm: that is a BLAS
    # call in NumPy's OpenBLAS, whose threads then spin for a while and slow the SciPy
    # OpenBLAS gesdd that follows by 30-40 % on two cores.
    bnorm = bmax * math.sqrt(float(np.sum((np.abs(bb) / bmax) ** 2)))
    u, s, vh = svd(a, dtype)
    if not s[0] > 0:
        return _trivial(m, n, dtype, requested, bnorm)
    # Work in units where σ₁ = 1 and ‖b‖ = 1, so no square under- or overflows whatever the
    # scaling of A and b; x, λ and the norms are scaled back at the end.
    s1 = float(s[0])
    s_n = s.astype(np.float64) / s1
    beta_all = matvec(u, bb, adjoint=True)
    beta_n = _div(beta_all, bnorm)
    # Singular values this far below σ₁ are filtered out by any λ on the grid (≥ 16·eps·σ₁);
    # keeping them would only produce 0·∞ in the curves.
    r = int(np.sum(s_n > 1e-150))
    fit = float(np.sum(np.abs(beta_n[:r]) ** 2))
    spec = R.Spectrum(
        s=s_n[:r],
        beta=beta_n[:r],
        delta0_sq=max(1.0 - fit, 0.0),
        m=m,
        b_norm_sq=1.0,
        eps=eps(dtype),
    )
    grid = spec.grid()
    curves = spec.curves(grid)

    if isinstance(lam, str):
        nn = None if noise_norm is None else float(noise_norm) / bnorm
        lam_n, method, diag = _choose(spec, curves, lam, nn, tau, n, s1, bnorm)
    else:
        lam_n, method, diag = float(lam) / s1, "fixed", None

    f = s_n[:r] ** 2 / (s_n[:r] ** 2 + lam_n**2)
    coef = f * beta_n[:r] / s_n[:r]
    with np.errstate(over="ignore", invalid="ignore"):
        x = (matvec(vh[:r], coef.astype(dtype), adjoint=True) * (bnorm / s1)).astype(
            dtype, copy=False)
    if not np.isfinite(x).all():
        raise NonFiniteError(
            f"the regularized solution overflows the {x.dtype} range (‖b‖/σ₁ = "
            f"{bnorm / s1:.3g}); rescale A or b",
            operand="x", where=[], count=int((~np.isfinite(x)).sum()),
        )
    rho2 = float(((1 - f) ** 2 * np.abs(beta_n[:r]) ** 2).sum() + spec.delta0_sq)
    # Curves of extreme data may leave the float range when scaled back (inf on a plot axis).
    with np.errstate(over="ignore"):
        sol_scale = bnorm / s1
        curves_out = {
            "residual_norms": np.sqrt(curves["rho2"]) * bnorm,
            "solution_norms": np.sqrt(curves["eta2"]) * sol_scale,
            "gcv_values": curves["gcv"] * bnorm**2,
        }
        solution_norm = math.sqrt(float(np.sum(np.abs(coef) ** 2))) * sol_scale
    return TikhonovResult(
        x=x,
        lam=lam_n * s1,
        method=method,
        requested=requested,
        residual_norm=math.sqrt(max(rho2, 0.0)) * bnorm,
        solution_norm=solution_norm,
        dof=float(f.sum()),
        diagnostics=diag,
        singular_values=s.astype(np.float64),
        beta=beta_all,
        lam_grid=grid * s1,
        **curves_out,
        curvature=curves["curvature"],
        incompatible_norm=math.sqrt(spec.delta0_sq) * bnorm,
        shape=(m, n),
    )


def _trivial(m: int, n: int, dtype: np.dtype, requested: str, bnorm: float) -> TikhonovResult:
    z = np.zeros(0)
    return TikhonovResult(
        x=np.zeros(n, dtype=dtype), lam=0.0, method="trivial", requested=requested,
        residual_norm=bnorm, solution_norm=0.0, dof=0.0, diagnostics=None,
        singular_values=z, beta=z, lam_grid=z, residual_norms=z, solution_norms=z,
        gcv_values=z, curvature=z, incompatible_norm=bnorm, shape=(m, n),
    )


def _choose(spec, curves, rule, noise_norm, tau, n, s1=1.0, bnorm=1.0):
    """Pick λ in normalized units (σ₁ = ‖b‖ = 1); diagnostics are reported in user units."""
    reasons: list[str] = []
    cand: dict[str, float] = {}
    flat_dec, competing = R.gcv_shape(curves)
    g = R.minimize_rule(spec, curves, "gcv")
    rg = R.minimize_rule(spec, curves, "rgcv")
    q = R.minimize_rule(spec, curves, "quasi")
    lc, corners = R.lcurve_corner(spec, curves)
    cand.update(gcv=g.lam, rgcv=rg.lam, lcurve=lc.lam, quasi=q.lam)
    gcv_flat = flat_dec > R.FLAT_DECADES
    gcv_ok = not (gcv_flat or g.at_edge or competing or g.few_dof)
    lc_ok = corners == 1 and not lc.at_edge

    dp_attainable = None
    dp_lam = None
    if noise_norm is not None:
        dp_lam, why = R.discrepancy(spec, tau * float(noise_norm), curves["lam"], bnorm)
        dp_attainable = dp_lam is not None
        if dp_lam is not None:
            cand["discrepancy"] = dp_lam
        else:
            reasons.append("discrepancy not attainable: " + why)

    logs = np.log10([cand[k] for k in ("gcv", "rgcv", "lcurve", "quasi")])
    spread = float(logs.max() - logs.min())
    disagree = spread > DISAGREE_DECADES
    if disagree:
        reasons.append(f"rules disagree: λ spans {spread:.1f} decades across GCV, robust GCV, "
                       "L-curve and quasi-optimality")
    gcv_why = []
    if gcv_flat:
        gcv_why.append(f"flat minimum (within 10 % over {flat_dec:.1f} decades)")
    if g.at_edge:
        gcv_why.append("minimum at the edge of the λ range")
    if competing:
        gcv_why.append(f"{competing} competing minim{'um' if competing == 1 else 'a'}")
    if g.few_dof:
        gcv_why.append(f"a deeper minimum with fewer than {R.MIN_RESIDUAL_DOF:g} residual degrees "
                       "of freedom (ignored)")
    lc_why = []
    if corners != 1:
        lc_why.append(f"{corners} corners" if corners else "no corner (never convex)")
    if lc.at_edge:
        lc_why.append("corner at the edge of the λ range")

    reliable = True
    if rule == "auto":
        if dp_lam is not None:
            lam, method = dp_lam, "discrepancy"
            reasons.append("noise norm given: discrepancy principle used")
        elif gcv_ok:
            lam, method = rg.lam, "rgcv"
            reasons.append("GCV minimum is well defined; robust GCV used to guard against "
                           "GCV's undersmoothing")
        elif lc_ok and abs(np.log10(lc.lam / rg.lam)) > MEDIAN_MAX_DECADES:
            lam, method = rg.lam, "rgcv"
            reasons.append("GCV unreliable (" + ", ".join(gcv_why) + "); the L-curve corner is "
                           f"{abs(np.log10(lc.lam / rg.lam)):.1f} decades from robust GCV, too "
                           "far to vote: robust GCV used (undersmoothing is the costlier error)")
        elif lc_ok:
            votes = [lc.lam, rg.lam] + ([] if q.at_edge else [q.lam])
            lam = _geometric_median(votes)
            method = "median(lcurve,rgcv,quasi)" if not q.at_edge else "median(lcurve,rgcv)"
            reasons.append("GCV unreliable (" + ", ".join(gcv_why) + "); L-curve has one "
                           "corner: geometric median of the L-curve, robust-GCV"
                           + ("" if q.at_edge else " and quasi-optimality") + " λ used")
        else:
            lam, method = rg.lam, "rgcv"
            reliable = False
            reasons.append("GCV unreliable (" + ", ".join(gcv_why) + ") and L-curve unreliable ("
                           + ", ".join(lc_why) + "): robust GCV used, treat λ with caution")
        if method == "rgcv" and rg.at_edge:
            reliable = False
            reasons.append("robust GCV minimum at the edge of the λ range")
    elif rule == "discrepancy":
        if dp_lam is None:
            raise ParameterChoiceError(
                "discrepancy principle not applicable: " + reasons[-1].split(": ", 1)[1]
                + "; check noise_norm (it is ‖e‖, not a standard deviation) or use lam='auto'"
            )
        lam, method = dp_lam, "discrepancy"
    else:
        lam, method = cand[rule], rule
        flagged = {
            "gcv": gcv_why,
            "rgcv": ["minimum at the edge of the λ range"] if rg.at_edge else [],
            "lcurve": lc_why,
            "quasi": ["minimum at the edge of the λ range"] if q.at_edge else [],
        }[rule]
        if flagged:
            reliable = False
            msg = f"lam={rule!r} looks unreliable here: " + ", ".join(flagged)
            reasons.append(msg)
            warnings.warn(msg + "; consider lam='auto'", RegularizationWarning, stacklevel=4)

    diag = TikhonovDiagnostics(
        gcv_flat=gcv_flat,
        gcv_flat_decades=flat_dec,
        gcv_at_edge=g.at_edge,
        gcv_competing_minima=competing,
        lcurve_corners=corners,
        lcurve_at_edge=lc.at_edge,
        discrepancy_attainable=dp_attainable,
        noise_estimate=R.noise_estimate(spec, n) * bnorm,
        candidates={k: v * s1 for k, v in cand.items()},
        spread_decades=spread,
        rules_disagree=disagree,
        reliable=reliable,
        reasons=tuple(reasons),
    )
    return float(lam), method, diag
