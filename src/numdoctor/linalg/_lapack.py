"""Thin layer over SciPy's LAPACK wrappers: factorize once, estimate rcond, solve, invert.

Layout trick: a C-ordered copy of ``A`` is, read in Fortran order, ``Aᵀ``. Factorizing that
copy in place (``getrf(..., overwrite_a=1)``) avoids the transposing copy that
``np.asfortranarray`` would make; solves with ``A`` then use ``trans=1`` and the 1-norm of
``A`` is the ∞-norm of the stored ``Aᵀ``. The inverse of ``Aᵀ`` from ``getri``, read back in
C order, is ``A⁻¹`` — again without a copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy.linalg.blas import get_blas_funcs
from scipy.linalg.lapack import get_lapack_funcs

#: From this order on, ``rcond`` of an LU factorization is estimated with Higham's iteration
#: driven by ``getrs`` (multi-threaded BLAS-2/3 solves) instead of ``gecon``, whose scaled
#: triangular solves (``latrs``) are serial: at n = 2000 this is 5 ms instead of 10-12 ms next
#: to a 68 ms ``getrf``. Both run the same LAPACK ``xLACN2`` iteration on the same factors.
FAST_ESTIMATE_MIN_N = 256

ASSUME = {
    "gen": "gen",
    "general": "gen",
    "sym": "sym",
    "symmetric": "sym",
    "her": "her",
    "hermitian": "her",
    "pos": "pos",
    "positive definite": "pos",
}


@dataclasses.dataclass
class Factorization:
    """One factorized matrix plus what is needed to solve with it and estimate its rcond."""

    kind: str  # "lu", "chol" or "ldl"
    fac: np.ndarray
    piv: np.ndarray | None
    transposed: bool  # ``fac`` factorizes Aᵀ (LU of a C-ordered copy)
    hermitian: bool  # ldl: hetrf rather than sytrf
    anorm: float  # ‖A‖ in the norm the estimate is for (1 unless asked for ∞)
    info: int  # > 0: zero pivot (LU/LDLᵀ) or non-positive pivot (Cholesky)
    norm: str  # "1" or "I": which condition number is estimated
    dtype: np.dtype

    @property
    def n(self) -> int:
        return self.fac.shape[0]

    def _f(self, name: str) -> Callable:
        return get_lapack_funcs((name,), (self.fac,))[0]

    # -- solves ------------------------------------------------------------------------
    def solve(self, B: np.ndarray) -> np.ndarray:
        """A⁻¹ B for a 2-D ``B`` (copied to Fortran order by the wrapper if needed)."""
        B = np.asarray(B, dtype=self.dtype)
        if self.kind == "lu":
            x, _ = self._f("getrs")(self.fac, self.piv, B, trans=1 if self.transposed else 0)
        elif self.kind == "chol":
            x, _ = self._f("potrs")(self.fac, B, lower=0)
        else:
            name = "hetrs" if self.hermitian and self.dtype.kind == "c" else "sytrs"
            x, _ = self._f(name)(self.fac, self.piv, B, lower=0)
        return x

    def solve_h(self, B: np.ndarray) -> np.ndarray:
        """A⁻ᴴ B (A⁻ᵀ B for real A), as the 1-norm estimator needs."""
        B = np.asarray(B, dtype=self.dtype)
        cplx = self.dtype.kind == "c"
        if self.kind == "lu":
            getrs = self._f("getrs")
            if not self.transposed:
                x, _ = getrs(self.fac, self.piv, B, trans=2 if cplx else 1)
            elif cplx:
                # fac holds M = Aᵀ, so Aᴴ = conj(M): solve M·conj(y) = conj(B).
                x, _ = getrs(self.fac, self.piv, B.conj(), trans=0)
                x = x.conj()
            else:
                x, _ = getrs(self.fac, self.piv, B, trans=0)
            return x
        if self.kind == "ldl" and not self.hermitian and cplx:
            # Complex symmetric: A⁻ᴴ = conj(A⁻¹) applied as conj(A⁻¹ conj(B)).
            return self.solve(B.conj()).conj()
        return self.solve(B)  # Hermitian (or real symmetric): A⁻ᴴ = A⁻¹

    # -- condition ---------------------------------------------------------------------
    def rcond_lapack(self) -> float:
        """Reciprocal condition estimate from LAPACK (gecon / pocon / sycon / hecon)."""
        if self.kind == "lu":
            # ‖A‖₁ of A is ‖Aᵀ‖∞ of the stored factor, hence the swapped norm letter.
            norm = self.norm if not self.transposed else ("I" if self.norm == "1" else "1")
            rc, _ = self._f("gecon")(self.fac, self.anorm, norm=norm)
        elif self.kind == "chol":
            rc, _ = self._f("pocon")(self.fac, self.anorm, uplo="U")
        else:
            name = "hecon" if self.hermitian and self.dtype.kind == "c" else "sycon"
            rc, _ = self._f(name)(self.fac, self.piv, self.anorm, lower=0)
        return float(rc)

    def rcond_fast(self, first: np.ndarray | None = None) -> float:
        """Higham's estimate of 1/(‖A‖·‖A⁻¹‖) driven by ``solve``/``solve_h``.

        ``first`` are the two solves the iteration always starts with (A⁻¹·e/n and the
        alternating vector), when the caller batched them with its own right-hand sides.
        """
        # Overflow in the solves means a condition number beyond the dtype's range, which the
        # infinite estimate already says; no warning should leak.
        with np.errstate(all="ignore"):
            if self.norm == "1":
                est = lacn2(self.solve, self.solve_h, self.n, self.dtype, first)
            else:
                # ‖A⁻¹‖∞ = ‖A⁻ᴴ‖₁: the same iteration with the roles of the solves swapped.
                est = lacn2(self.solve_h, self.solve, self.n, self.dtype, first)
        return _rcond_from(self.anorm, est)

    def rcond(self) -> float:
        if self.kind == "lu" and self.n >= FAST_ESTIMATE_MIN_N:
            return self.rcond_fast()
        return self.rcond_lapack()

    def solve_with_rcond(self, B: np.ndarray) -> tuple[np.ndarray, float]:
        """A⁻¹B and the rcond estimate, sharing the first estimator solve with B."""
        n = self.n
        if self.kind != "lu" or n < FAST_ESTIMATE_MIN_N or self.norm != "1":
            return self.solve(B), self.rcond()
        k = B.shape[1]
        rhs = np.empty((n, k + 2), dtype=self.dtype, order="F")
        rhs[:, :k] = B
        rhs[:, k] = 1.0 / n
        rhs[:, k + 1] = _alt_vector(n)
        X = self.solve(rhs)
        return X[:, :k], self.rcond_fast(first=X[:, k:])

    # -- inverse -----------------------------------------------------------------------
    def inverse(self) -> np.ndarray:
        n = self.n
        if self.kind == "lu":
            getri, getri_lwork = get_lapack_funcs(("getri", "getri_lwork"), (self.fac,))
            lwork, _ = getri_lwork(n)
            inv, _ = getri(self.fac, self.piv, lwork=max(int(np.real(lwork)), 1),
                           overwrite_lu=1)
            # inv is (Aᵀ)⁻¹ in Fortran order when transposed, i.e. A⁻¹ in C order.
            return inv.T if self.transposed else inv
        if self.kind == "chol":
            inv, _ = self._f("potri")(self.fac, lower=0)
            upper = np.triu(inv)
            return upper + np.triu(inv, 1).conj().T
        return self.solve(np.eye(n, dtype=self.dtype))


def herm(M: np.ndarray) -> np.ndarray:
    """Mᴴ as a view: ``.conj()`` of a real array would copy it for nothing."""
    return M.conj().T if np.iscomplexobj(M) else M.T


def matvec(M: np.ndarray, x: np.ndarray, *, adjoint: bool = False) -> np.ndarray:
    """``M @ x`` (or ``Mᴴ @ x``) with SciPy's BLAS, without copying a contiguous ``M``.

    NumPy and SciPy ship separate OpenBLAS builds; a NumPy BLAS call between SciPy LAPACK
    calls leaves NumPy's threads spinning, which on two cores slows the next SciPy call (a
    repeated ``tikhonov`` at n = 1000 ran 40 % slower than its SVD because of two such
    matrix-vector products).
    """
    cplx = np.iscomplexobj(M)
    x = np.asarray(x, dtype=M.dtype)
    gemv = get_blas_funcs("gemv", (M,))
    if M.flags.f_contiguous:
        return gemv(1.0, M, x, trans=(2 if cplx else 1) if adjoint else 0)
    if M.flags.c_contiguous:
        F = M.T  # Fortran-ordered view of Mᵀ
        if not adjoint:
            return gemv(1.0, F, x, trans=1)
        return gemv(1.0, F, x.conj()).conj() if cplx else gemv(1.0, F, x)
    return (herm(M) if adjoint else M) @ x


def _rcond_from(anorm: float, est: float) -> float:
    if not np.isfinite(est) or anorm == 0.0:
        return 0.0
    with np.errstate(over="ignore"):
        prod = anorm * est
    if not np.isfinite(prod) or prod == 0.0:
        return 0.0 if prod != 0.0 else 1.0
    return float(1.0 / prod)


def _alt_vector(n: int) -> np.ndarray:
    # xLACN2's final test vector x_i = (-1)^i (1 + i/(n-1)).
    i = np.arange(n, dtype=np.float64)
    sign = np.where(i % 2 == 0, 1.0, -1.0)
    return sign * (1.0 + i / max(n - 1, 1))


def _sign(x: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(x):
        ax = np.abs(x)
        return np.where(ax > 0, x / np.where(ax > 0, ax, 1.0), 1.0)
    return np.where(x >= 0, 1.0, -1.0)


def lacn2(
    solve: Callable[[np.ndarray], np.ndarray],
    solve_h: Callable[[np.ndarray], np.ndarray],
    n: int,
    dtype: np.dtype,
    first: np.ndarray | None = None,
    itmax: int = 5,
) -> float:
    """Lower-bound estimate of ‖A⁻¹‖₁ by LAPACK's xLACN2 iteration (Higham 1988).

    Same control flow as the Fortran routine: start from e/n, alternate A⁻¹ and A⁻ᴴ solves
    on sign vectors for at most ``itmax`` steps, stop on a repeated sign vector or no
    increase, and finish with the alternating test vector. The result is the largest
    ‖A⁻¹x‖₁/‖x‖₁ seen, so it never exceeds the true norm.
    """
    if first is None:
        start = np.empty((n, 2), dtype=dtype, order="F")
        start[:, 0] = 1.0 / n
        start[:, 1] = _alt_vector(n)
        first = solve(start)
    x = first[:, 0]
    alt_est = 2.0 * float(np.abs(first[:, 1]).sum()) / (3.0 * n)
    est = float(np.abs(x).sum())
    if n == 1 or not np.isfinite(est):
        return max(est, alt_est) if np.isfinite(est) else np.inf
    real = np.dtype(dtype).kind != "c"
    xi = _sign(x)
    z = solve_h(xi.reshape(n, 1).astype(dtype))[:, 0]
    j = int(np.argmax(np.abs(z)))
    best = est
    for _ in range(2, itmax + 1):
        e = np.zeros((n, 1), dtype=dtype)
        e[j, 0] = 1.0
        x = solve(e)[:, 0]
        est_old, est = est, float(np.abs(x).sum())
        if not np.isfinite(est):
            return np.inf
        best = max(best, est)
        new = _sign(x)
        if real and np.array_equal(new, xi):
            break  # repeated sign vector: converged
        if est <= est_old:
            break
        xi = new
        z = solve_h(xi.reshape(n, 1).astype(dtype))[:, 0]
        jlast, j = j, int(np.argmax(np.abs(z)))
        if np.abs(z[jlast]) == np.abs(z[j]):
            break
    return max(best, alt_est)


def _sym_norm(a: np.ndarray, hermitian: bool, norm: str) -> float:
    # Only the upper triangle is read by the symmetric/Cholesky routines, so the norm must be
    # that of the matrix the upper triangle defines (LAPACK's lansy/lanhe).
    upper = np.triu(a)
    strict = np.triu(a, 1)
    full = upper + (strict.conj().T if hermitian else strict.T)
    if hermitian:
        d = np.arange(a.shape[0])
        full[d, d] = full[d, d].real
    ax = np.abs(full)
    return float(ax.sum(axis=0).max() if norm == "1" else ax.sum(axis=1).max()) if a.size else 0.0


def factorize(
    a: np.ndarray, assume: str, dtype: np.dtype, norm: str = "1", *, overwrite: bool = False
) -> Factorization:
    """Factorize one square matrix; ``a`` is left alone unless ``overwrite`` (a scratch copy)."""
    kind = ASSUME[assume]
    if kind == "gen":
        reuse = overwrite and a.dtype == dtype
        if a.flags.f_contiguous and not a.flags.c_contiguous:
            work = a if reuse else np.array(a, dtype=dtype, order="F", copy=True)
            mat, transposed = work, False
        else:
            reuse = reuse and a.flags.c_contiguous
            work = a if reuse else np.array(a, dtype=dtype, order="C", copy=True)
            mat, transposed = work.T, True
        getrf, lange = get_lapack_funcs(("getrf", "lange"), (mat,))
        # The norm must be taken before getrf overwrites the copy.
        letter = norm if not transposed else ("I" if norm == "1" else "1")
        anorm = float(lange(letter, mat)) if mat.size else 0.0
        lu, piv, info = getrf(mat, overwrite_a=1)
        return Factorization("lu", lu, piv, transposed, False, anorm, int(info), norm, dtype)
    hermitian = kind in ("her", "pos")
    work = np.array(a, dtype=dtype, order="F", copy=True)
    anorm = _sym_norm(work, hermitian and dtype.kind == "c", norm)
    if kind == "pos":
        potrf = get_lapack_funcs(("potrf",), (work,))[0]
        c, info = potrf(work, lower=0, clean=1, overwrite_a=1)
        return Factorization("chol", c, None, False, True, anorm, int(info), norm, dtype)
    cplx_her = hermitian and dtype.kind == "c"
    trf_name = "hetrf" if cplx_her else "sytrf"
    trf, trf_lwork = get_lapack_funcs((trf_name, trf_name + "_lwork"), (work,))
    lwork, _ = trf_lwork(work.shape[0], lower=0)
    ldu, ipiv, info = trf(work, lower=0, lwork=max(int(np.real(lwork)), 1), overwrite_a=1)
    return Factorization("ldl", ldu, ipiv, False, cplx_her, anorm, int(info), norm, dtype)


def svd(a: np.ndarray, dtype: np.dtype, compute_uv: bool = True):
    """Thin SVD ``(u, s, vh)`` by gesdd, falling back to the slower, more robust gesvd.

    A C-ordered ``a`` is handed to LAPACK as ``aᵀ`` (no transposing copy); from
    ``aᵀ = U' S V'ᴴ`` we read ``a = (V'ᴴ)ᵀ S U'ᵀ``.
    """
    transposed = not (a.flags.f_contiguous and not a.flags.c_contiguous)
    src = a.T if transposed else a
    m, n = src.shape
    uv = int(compute_uv)
    u = s = vt = None
    for driver in ("gesdd", "gesvd"):
        work = np.array(src, dtype=dtype, order="F", copy=True)
        fn, fn_lwork = get_lapack_funcs((driver, driver + "_lwork"), (work,))
        lwork, _ = fn_lwork(m, n, compute_uv=uv, full_matrices=0)
        u, s, vt, info = fn(work, compute_uv=uv, full_matrices=0,
                            lwork=max(int(np.real(lwork)), 1), overwrite_a=1)
        if info < 0:
            raise ValueError(f"illegal value in argument {-info} of {driver}")
        if info == 0:
            break
    else:
        raise np.linalg.LinAlgError("SVD did not converge (gesdd and gesvd)")
    if not compute_uv:
        return None, s, None
    if transposed:
        return vt.T, s, u.T
    return u, s, vt
