"""Classical discrete ill-posed test problems, built from their mathematical definitions.

These follow the kernels and exact solutions used in Hansen's *Regularization Tools*, but are
written from the integral equations rather than ported, so individual entries differ slightly
from the MATLAB package (different quadrature in places). Every problem is consistent:
``b == A @ x`` up to rounding, so measured errors reflect the regularization, not a mismatch
between a discretized ``A`` and an analytically integrated ``b``.

Each function returns a :class:`Problem` ``(A, b, x)`` that unpacks like a tuple::

    A, b, x = shaw(128)

Kernels and discretizations:

``shaw``      one-dimensional image restoration, midpoint rule on [-π/2, π/2]; severe.
``baart``     first-kind Fredholm equation, exp(s·cos t), Galerkin with box functions; severe.
``deriv2``    Green's function of the second derivative, Galerkin with box functions; mild.
``phillips``  convolution with 1 + cos(πx/3), midpoint rule on [-6, 6]; moderate.
``foxgood``   √(s² + t²) on [0, 1]², midpoint rule; severe (and its solution is not smooth
              in the singular basis, which makes parameter choice hard).
``heat``      inverse heat equation, Volterra, lower-triangular Toeplitz; κ = 1 is severe.
``gravity``   one-dimensional gravity surveying, d·(d² + (s-t)²)^(-3/2); severe.
``hilbert``   the Hilbert matrix with x = ones, for the guard rather than regularization.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "PROBLEMS",
    "Problem",
    "baart",
    "deriv2",
    "foxgood",
    "gravity",
    "heat",
    "hilbert",
    "phillips",
    "shaw",
]


class Problem(NamedTuple):
    """A test problem: system matrix, exact right-hand side and exact solution."""

    A: np.ndarray
    b: np.ndarray
    x: np.ndarray


def _midpoints(a: float, b: float, n: int) -> tuple[np.ndarray, float]:
    h = (b - a) / n
    return a + (np.arange(n) + 0.5) * h, h


def _check_n(n: int, multiple: int = 1) -> int:
    n = int(n)
    if n < 1 or n % multiple:
        raise ValueError(f"n must be a positive multiple of {multiple}, got {n}")
    return n


def shaw(n: int = 128) -> Problem:
    """Shaw's image-restoration kernel ((cos s + cos t)·sin u / u)², u = π(sin s + sin t)."""
    n = _check_n(n)
    t, h = _midpoints(-np.pi / 2, np.pi / 2, n)
    s = t[:, None]
    u = np.pi * (np.sin(s) + np.sin(t[None, :]))
    # sinc(u/π) = sin(u)/u with the removable singularity at u = 0 handled by numpy.
    k = ((np.cos(s) + np.cos(t[None, :])) * np.sinc(u / np.pi)) ** 2
    A = h * k
    x = 2.0 * np.exp(-6.0 * (t - 0.8) ** 2) + np.exp(-2.0 * (t + 0.5) ** 2)
    return Problem(A, A @ x, x)


def _gauss_legendre(a: np.ndarray, b: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``order``-point Gauss-Legendre rules on each interval [a_j, b_j]."""
    z, w = np.polynomial.legendre.leggauss(order)
    mid = (a + b)[:, None] / 2.0
    half = (b - a)[:, None] / 2.0
    return mid + half * z[None, :], half * w[None, :]


def baart(n: int = 128) -> Problem:
    """Baart's kernel exp(s·cos t), s ∈ [0, π/2], t ∈ [0, π], Galerkin with box functions."""
    n = _check_n(n)
    hs, ht = np.pi / (2 * n), np.pi / n
    s_edges = np.arange(n + 1) * hs
    t_edges = np.arange(n + 1) * ht
    # The s-integral of exp(s·c) is closed form; the t-integral of a smooth integrand is done
    # with 8-point Gauss-Legendre per cell, which is exact to rounding at these widths.
    tn, tw = _gauss_legendre(t_edges[:-1], t_edges[1:], 8)  # (n, 8)
    c = np.cos(tn)  # (n, 8)
    s0 = s_edges[:-1, None, None]
    s1 = s_edges[1:, None, None]
    cc = c[None, :, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (np.exp(s1 * cc) - np.exp(s0 * cc)) / cc
    inner = np.where(np.abs(cc) < 1e-12, s1 - s0, inner)
    # Cell integrals divided by the cell sizes make A ≈ h_t·K(s_i, t_j), comparable to the
    # midpoint problems, and let x hold cell averages of f.
    A = (inner * tw[None, :, :]).sum(axis=2) / hs
    t0, t1 = t_edges[:-1], t_edges[1:]
    x = (np.cos(t0) - np.cos(t1)) / ht
    return Problem(A, A @ x, x)


def deriv2(n: int = 128, example: int = 1) -> Problem:
    """Second-derivative Green's function on [0, 1]², Galerkin with box functions.

    ``example=1``: f(t) = t; ``example=2``: f(t) = eᵗ.
    """
    n = _check_n(n)
    h = 1.0 / n
    edges = np.arange(n + 1) * h
    mid = edges[:-1] + h / 2
    s = mid[:, None]
    t = mid[None, :]
    # Off the diagonal the kernel is a product of linear functions, so the cell integral is
    # h² times its value at the midpoints.
    A = h * np.where(s < t, s * (t - 1.0), t * (s - 1.0))
    a, b = edges[:-1], edges[1:]

    def F(u: np.ndarray) -> np.ndarray:
        return u**4 / 4 - u**3 / 3 - a**2 * u**2 / 2 + a**2 * u

    # On a diagonal cell the kernel has a kink along s = t; its integral over the square is
    # 2·∫_a^b∫_a^t s(t-1) ds dt = ∫_a^b (t-1)(t²-a²) dt.
    A[np.arange(n), np.arange(n)] = (F(b) - F(a)) / h
    if example == 1:
        x = mid.copy()
    elif example == 2:
        x = (np.exp(b) - np.exp(a)) / h
    else:
        raise ValueError(f"example must be 1 or 2, got {example}")
    return Problem(A, A @ x, x)


def _phi(u: np.ndarray) -> np.ndarray:
    return np.where(np.abs(u) < 3.0, 1.0 + np.cos(np.pi * u / 3.0), 0.0)


def phillips(n: int = 128) -> Problem:
    """Phillips' convolution with φ(u) = 1 + cos(πu/3) on |u| < 3, on [-6, 6]."""
    n = _check_n(n)
    t, h = _midpoints(-6.0, 6.0, n)
    A = h * _phi(t[:, None] - t[None, :])
    x = _phi(t)
    return Problem(A, A @ x, x)


def foxgood(n: int = 128) -> Problem:
    """Fox & Goodwin's kernel √(s² + t²) on [0, 1]² with f(t) = t (midpoint rule)."""
    n = _check_n(n)
    t, h = _midpoints(0.0, 1.0, n)
    A = h * np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    x = t.copy()
    return Problem(A, A @ x, x)


def heat(n: int = 128, kappa: float = 1.0) -> Problem:
    """Inverse heat equation (Volterra, lower-triangular Toeplitz); ``kappa=1`` is severe.

    k(t) = t^(-3/2) / (2κ√π) · exp(-1/(4κ²t)); the exact solution is a smooth bump on the
    first half of [0, 1] and zero on the second half.
    """
    n = _check_n(n, 2)
    t, h = _midpoints(0.0, 1.0, n)
    k = h * t**-1.5 / (2.0 * kappa * np.sqrt(np.pi)) * np.exp(-1.0 / (4.0 * kappa**2 * t))
    idx = np.arange(n)
    diff = idx[:, None] - idx[None, :]
    A = np.where(diff >= 0, k[np.clip(diff, 0, None)], 0.0)
    u = 20.0 * (idx + 1) / n
    x = np.where(u < 2, 0.75 * u**2 / 4, np.where(u < 3, 0.75 + (u - 2) * (3 - u),
                                                       0.75 * np.exp(-2 * (u - 3))))
    x = np.where(idx < n // 2, x, 0.0)
    return Problem(A, A @ x, x)


def gravity(n: int = 128, depth: float = 0.25) -> Problem:
    """One-dimensional gravity surveying, K = d·(d² + (s-t)²)^(-3/2), midpoint rule."""
    n = _check_n(n)
    t, h = _midpoints(0.0, 1.0, n)
    A = h * depth * (depth**2 + (t[:, None] - t[None, :]) ** 2) ** -1.5
    x = np.sin(np.pi * t) + 0.5 * np.sin(2 * np.pi * t)
    return Problem(A, A @ x, x)


def hilbert(n: int) -> Problem:
    """The n×n Hilbert matrix 1/(i + j + 1) with exact solution ones(n)."""
    n = _check_n(n)
    i = np.arange(n)
    A = 1.0 / (i[:, None] + i[None, :] + 1.0)
    x = np.ones(n)
    return Problem(A, A @ x, x)


#: The six problems the accuracy benchmark is measured on, by name.
PROBLEMS = {
    "shaw": shaw,
    "baart": baart,
    "deriv2": deriv2,
    "phillips": phillips,
    "foxgood": foxgood,
    "heat": heat,
}
