"""Regularization-parameter rules for standard-form Tikhonov, all O(n) per λ after one SVD.

With ``A = U Σ Vᴴ``, ``β = Uᴴb`` and filter factors ``fᵢ = σᵢ²/(σᵢ² + λ²)``:

* residual   ρ²(λ) = Σ (1-fᵢ)²|βᵢ|² + δ₀²   (δ₀² = ‖b‖² - ‖β‖², the part outside range(A))
* solution   η²(λ) = Σ fᵢ²|βᵢ|²/σᵢ²
* dof(λ)     = Σ fᵢ
* GCV        G(λ)  = ρ² / (m - dof)²
* robust GCV R(λ)  = (γ + (1-γ)·Σfᵢ²/m)·G(λ)  (Lukas 2006), γ = 0.1
* quasi-opt. Q(λ)  = ‖λ dx/dλ‖ = (Σ (fᵢ(1-fᵢ)|βᵢ|/σᵢ)²)^½
* L-curve    curvature of (log ρ, log η), closed form (Hansen's ``lcfun``)
* discrepancy ρ(λ) = τ·δ for a known noise norm δ (ρ² is increasing in λ)
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import brentq, minimize_scalar

RGCV_GAMMA = 0.1
GRID_POINTS = 200
#: GCV is "flat" when it stays within 10 % of its minimum over more than this many decades.
FLAT_DECADES = 3.0
FLAT_TOL = 0.10
#: Competing GCV minima: other local minima within FLAT_TOL of the best, this far away.
COMPETING_DECADES = 1.0
#: L-curve corners: local curvature maxima at least this fraction of the largest.
CORNER_FRACTION = 0.5
#: GCV-type minima are only searched where at least this many residual degrees of freedom
#: (m - dof) remain: below, G(λ) is a ratio of a χ² with one or two degrees of freedom and
#: its minimum is a coin flip (e.g. heat, n = 32: a minimum at λ = 6e-14 with 1.2 left).
MIN_RESIDUAL_DOF = 3.0


@dataclasses.dataclass
class Spectrum:
    """The SVD quantities every rule needs (only positive singular values kept)."""

    s: np.ndarray  # positive singular values, descending
    beta: np.ndarray  # Uᴴb for those
    delta0_sq: float  # ‖b‖² minus what range(A) can fit (incl. zero singular values)
    m: int  # rows of A
    b_norm_sq: float
    eps: float

    @property
    def abs_beta_sq(self) -> np.ndarray:
        return np.abs(self.beta) ** 2

    def grid(self, points: int = GRID_POINTS) -> np.ndarray:
        s1 = float(self.s[0])
        # Hansen's range: below σ_min nothing changes but GCV and quasi-optimality acquire
        # spurious minima as λ → 0; below 16·eps·σ₁ the filter factors are rounding noise.
        lo = max(float(self.s[-1]), 16.0 * self.eps * s1)
        lo = min(lo, s1 * 1e-2)
        return np.logspace(np.log10(lo), np.log10(s1), points)

    def _f(self, lam: np.ndarray) -> np.ndarray:
        s2 = self.s**2
        return s2 / (s2 + np.asarray(lam, dtype=np.float64)[:, None] ** 2)

    def curves(self, lam: np.ndarray) -> dict[str, np.ndarray]:
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        f = self._f(lam)
        b2 = self.abs_beta_sq
        xi2 = b2 / self.s**2
        rho2 = ((1.0 - f) ** 2 * b2).sum(axis=1) + self.delta0_sq
        eta2 = (f**2 * xi2).sum(axis=1)
        dof = f.sum(axis=1)
        m = float(self.m)
        with np.errstate(divide="ignore", invalid="ignore"):
            gcv = rho2 / (m - dof) ** 2
        gcv = np.where(m - dof > 0, gcv, np.inf)
        mu2 = (f**2).sum(axis=1) / m
        rgcv = (RGCV_GAMMA + (1.0 - RGCV_GAMMA) * mu2) * gcv
        quasi = np.sqrt(((f * (1.0 - f)) ** 2 * xi2).sum(axis=1))
        return {"lam": lam, "rho2": rho2, "eta2": eta2, "dof": dof, "gcv": gcv,
                "rgcv": rgcv, "quasi": quasi, "curvature": self.curvature(lam)}

    def curvature(self, lam: np.ndarray) -> np.ndarray:
        """Signed curvature of the L-curve (log ρ, log η) at ``lam``; corners are > 0."""
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        L = lam[:, None]
        f = self._f(lam)
        cf = 1.0 - f
        b2 = self.abs_beta_sq
        xi2 = b2 / self.s**2
        with np.errstate(all="ignore"):
            eta = np.sqrt((f**2 * xi2).sum(axis=1))
            rho = np.sqrt((cf**2 * b2).sum(axis=1) + self.delta0_sq)
            f1 = -2.0 * f * cf / L
            f2 = -f1 * (3.0 - 4.0 * f) / L
            phi = (f * f1 * xi2).sum(axis=1)
            psi = (cf * f1 * b2).sum(axis=1)
            dphi = ((f1**2 + f * f2) * xi2).sum(axis=1)
            dpsi = ((-(f1**2) + cf * f2) * b2).sum(axis=1)
            deta = phi / eta
            drho = -psi / rho
            ddeta = dphi / eta - deta * (deta / eta)
            ddrho = -dpsi / rho - drho * (drho / rho)
            dle, dlr = deta / eta, drho / rho
            ddle, ddlr = ddeta / eta - dle**2, ddrho / rho - dlr**2
            k = (dlr * ddle - ddlr * dle) / (dlr**2 + dle**2) ** 1.5
        return np.where(np.isfinite(k), k, -np.inf)

    def scalar(self, name: str, lam: float) -> float:
        return float(self.curves(np.array([lam]))[name][0])

    def rho2(self, lam: float) -> float:
        f = self._f(np.array([lam]))[0]
        return float(((1.0 - f) ** 2 * self.abs_beta_sq).sum() + self.delta0_sq)


def _refine(fun, lam: np.ndarray, i: int) -> float:
    """Bounded 1-D minimization of ``fun`` in log λ between the grid neighbours of ``i``."""
    lo = lam[max(i - 1, 0)]
    hi = lam[min(i + 1, len(lam) - 1)]
    if hi <= lo:
        return float(lam[i])
    res = minimize_scalar(
        lambda t: fun(float(np.exp(t))),
        bounds=(np.log(lo), np.log(hi)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    cand = float(np.exp(res.x))
    return cand if res.fun <= fun(float(lam[i])) else float(lam[i])


@dataclasses.dataclass
class RuleResult:
    lam: float
    index: int  # grid index of the discrete optimum
    at_edge: bool
    few_dof: bool = False  # the unrestricted minimum had < MIN_RESIDUAL_DOF left


def minimize_rule(spec: Spectrum, curves: dict[str, np.ndarray], name: str) -> RuleResult:
    vals = curves[name]
    lam = curves["lam"]
    few_dof = False
    if name in ("gcv", "rgcv"):
        enough = (spec.m - curves["dof"]) >= MIN_RESIDUAL_DOF
        if enough.any() and not enough[int(np.argmin(vals))]:
            few_dof = True
            vals = np.where(enough, vals, np.inf)
    i = int(np.argmin(vals))
    at_edge = i in (0, len(lam) - 1) or (few_dof and i > 0 and not np.isfinite(vals[i - 1]))
    return RuleResult(_refine(lambda t: spec.scalar(name, t), lam, i), i, at_edge, few_dof)


def gcv_shape(curves: dict[str, np.ndarray]) -> tuple[float, int]:
    """How many decades GCV stays within 10 % of its minimum; competing local minima."""
    g = curves["gcv"]
    lam = curves["lam"]
    i = int(np.argmin(g))
    gmin = g[i]
    step = np.log10(lam[-1] / lam[0]) / max(len(lam) - 1, 1)
    near = g <= (1.0 + FLAT_TOL) * gmin
    flat_decades = float(near.sum() * step)
    interior = np.nonzero((g[1:-1] < g[:-2]) & (g[1:-1] < g[2:]))[0] + 1
    far = [
        j for j in interior
        if near[j] and abs(np.log10(lam[j] / lam[i])) >= COMPETING_DECADES
    ]
    return flat_decades, len(far)


def lcurve_corner(spec: Spectrum, curves: dict[str, np.ndarray]) -> tuple[RuleResult, int]:
    """The L-curve corner (largest positive curvature) and the number of corners."""
    k = curves["curvature"]
    lam = curves["lam"]
    i = int(np.argmax(k))
    if not k[i] > 0:
        # Never convex: Hansen's convention takes the small-λ end of the curve.
        return RuleResult(float(lam[0]), 0, True), 0
    padded = np.concatenate(([-np.inf], k, [-np.inf]))
    inner = padded[1:-1]
    peaks = np.nonzero((inner > padded[:-2]) & (inner >= padded[2:]) & (inner > 0))[0]
    corners = int(np.sum(k[peaks] >= CORNER_FRACTION * k[i]))
    lam_c = _refine(lambda t: -spec.curvature(np.array([t]))[0], lam, i)
    return RuleResult(lam_c, i, i in (0, len(lam) - 1)), corners


def discrepancy(
    spec: Spectrum, target: float, lam: np.ndarray, unit: float = 1.0
) -> tuple[float | None, str]:
    """λ with ρ(λ) = target, or ``(None, reason)`` when no λ in the usable range gives it.

    ``unit`` converts norms back to the caller's units for the message. The classical target
    τ·‖e‖ is kept on purpose. Targets lowered towards the expected noise residual,
    σ²·tr((I−H)²) or σ²(m − tr H), have roots that noise decides, and they undersmooth
    catastrophically on severely ill-posed problems. See "Corrections of the discrepancy
    target" in docs/linalg.md.
    """
    t2 = target**2
    lo, hi = float(lam[0]), float(lam[-1])
    r_lo = spec.rho2(lo)
    if t2 <= r_lo:
        floor = np.sqrt(r_lo)
        why = (
            f"τ·noise_norm = {target * unit:.3g} is below the smallest attainable residual "
            f"{floor * unit:.3g} (the part of b outside range(A) is "
            f"{np.sqrt(spec.delta0_sq) * unit:.3g})"
        )
        return None, why
    if t2 >= spec.b_norm_sq:
        return None, (
            f"τ·noise_norm = {target * unit:.3g} ≥ ‖b‖ = {np.sqrt(spec.b_norm_sq) * unit:.3g}: "
            "the data are "
            "indistinguishable from noise (λ → ∞, x → 0)"
        )
    while spec.rho2(hi) < t2:
        hi *= 10.0
    g = lambda t: spec.rho2(float(np.exp(t))) - t2  # noqa: E731
    root = brentq(g, np.log(lo), np.log(hi), xtol=1e-10, rtol=1e-12)
    return float(np.exp(root)), ""


def noise_estimate(spec: Spectrum, n_cols: int) -> float:
    """Estimated noise norm ‖e‖ from the data alone (reported, never used to choose λ).

    Uses the residual outside range(A) when m > n, otherwise the median of |βᵢ|² over the
    trailing half of the Picard coefficients, where white noise dominates for an ill-posed
    problem (median of χ²₁ is 0.4549).
    """
    m = spec.m
    extra = m - n_cols
    if extra >= 8 and spec.delta0_sq > 0:
        return float(np.sqrt(spec.delta0_sq / extra * m))
    tail = spec.abs_beta_sq[len(spec.s) // 2:]
    if tail.size == 0:
        return float("nan")
    return float(np.sqrt(np.median(tail) / 0.4549364 * m))
