"""JAX backend: a jit-compiled guard core, errors raised outside the trace.

``guarded_solve_core(A, B, threshold)`` is a pure function (LU by ``lax.linalg.lu``,
triangular solves, Higham's estimator with a fixed number of steps, per-matrix status codes)
that works under ``jax.jit`` and ``vmap``. The public ``solve``/``inv`` call it compiled, then
look at the status on the host to raise, warn or fall back like NumPy. Under a trace there is
no value to look at: pass ``on_ill="ignore", return_info=True`` and check ``info.status``
outside the traced function. ``assume_a`` other than ``"gen"`` and the SVD-based operations
run through the NumPy path on the host.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import _solve as S
from .._checks import as_stack, rhs
from .._dtypes import digits_available, result_dtype
from .._errors import DTypeError
from .._info import SolveInfo
from .._lapack import _alt_vector
from .._policy import resolve
from .._report import Status
from . import _host

ESTIMATOR_STEPS = 4


def _jnp():
    import jax.numpy as jnp

    return jnp


def _is_tracer(x: Any) -> bool:
    try:
        import jax

        return isinstance(x, jax.core.Tracer)
    except (ImportError, AttributeError):  # pragma: no cover - very old/new JAX layouts
        return "interpreters" in type(x).__module__


def _is_jax(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] in ("jax", "jaxlib")


def _to_numpy(x: Any) -> Any:
    if not _is_jax(x):
        return x
    if _is_tracer(x):
        raise DTypeError(
            "traced JAX value: this operation needs concrete values; call it outside jit "
            "(solve/inv accept tracers with on_ill='ignore')",
            dtype=getattr(x, "dtype", None),
        )
    return np.asarray(x)


def _run_host(op: str, *args: Any, **kwargs: Any) -> Any:
    jnp = _jnp()
    return _host.run(op, args, kwargs, _to_numpy, jnp.asarray)


def guarded_solve_core(A: Any, B: Any, threshold: Any) -> tuple[Any, Any, Any]:
    """Jit-friendly guard: ``(A⁻¹B, rcond, status)`` for a batch ``A (..., n, n)``.

    Singular or non-finite matrices get NaN answers and their status code; no Python
    control flow depends on values.
    """
    import jax
    from jax.lax import linalg as lax_linalg

    jnp = _jnp()
    n = A.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(n, dtype=A.dtype), A.shape)
    finA = jnp.all(jnp.isfinite(A), axis=(-2, -1))
    finB = jnp.all(jnp.isfinite(B), axis=(-2, -1))
    Ac = jnp.where(finA[..., None, None], A, eye)
    anorm = jnp.max(jnp.sum(jnp.abs(Ac), axis=-2), axis=-1)
    lu, _, perm = lax_linalg.lu(Ac)
    sing = jnp.any(jnp.diagonal(lu, axis1=-2, axis2=-1) == 0, axis=-1)
    lu = jnp.where(sing[..., None, None], eye, lu)
    perm = jnp.where(sing[..., None], jnp.arange(n), perm)
    inv_perm = jnp.argsort(perm, axis=-1)

    def solve(X):
        # A[perm] = L U, so A x = b is L U x = b[perm].
        Xp = jnp.take_along_axis(X, perm[..., :, None], axis=-2)
        y = lax_linalg.triangular_solve(lu, Xp, left_side=True, lower=True, unit_diagonal=True)
        return lax_linalg.triangular_solve(lu, y, left_side=True, lower=False)

    def solve_h(X):
        # Aᴴ = Uᴴ Lᴴ P: solve Uᴴ w = b, Lᴴ v = w, then x[perm] = v.
        w = lax_linalg.triangular_solve(lu, X, left_side=True, lower=False,
                                        transpose_a=True, conjugate_a=True)
        v = lax_linalg.triangular_solve(lu, w, left_side=True, lower=True, unit_diagonal=True,
                                        transpose_a=True, conjugate_a=True)
        return jnp.take_along_axis(v, inv_perm[..., :, None], axis=-2)

    def sign(x):
        if jnp.iscomplexobj(x):
            ax = jnp.abs(x)
            return jnp.where(ax > 0, x / jnp.where(ax > 0, ax, 1.0), 1.0).astype(x.dtype)
        return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)

    batch = A.shape[:-2]
    start = jnp.stack(
        [jnp.full((*batch, n), 1.0 / n, dtype=A.dtype),
         jnp.broadcast_to(jnp.asarray(_alt_vector(n), dtype=A.dtype), (*batch, n))],
        axis=-1,
    )
    Y = solve(start)
    x = Y[..., 0]
    est = jnp.sum(jnp.abs(x), axis=-1)
    alt_est = 2.0 * jnp.sum(jnp.abs(Y[..., 1]), axis=-1) / (3.0 * n)
    for _ in range(ESTIMATOR_STEPS):
        z = solve_h(sign(x)[..., None])[..., 0]
        j = jnp.argmax(jnp.abs(z), axis=-1)
        x = solve(jax.nn.one_hot(j, n, dtype=A.dtype)[..., None])[..., 0]
        est = jnp.maximum(est, jnp.sum(jnp.abs(x), axis=-1))
    est = jnp.nan_to_num(jnp.maximum(est, alt_est), nan=jnp.inf)
    prod = anorm * est
    ok = (prod > 0) & jnp.isfinite(prod)
    rcond = jnp.where(ok, 1.0 / jnp.where(ok, prod, 1.0), 0.0)
    rcond = jnp.where(sing, 0.0, rcond)
    fin = finA & finB
    X = solve(B)
    X = jnp.where((sing | ~fin)[..., None, None], jnp.nan, X)
    status = jnp.where(rcond < threshold, int(Status.ILL_CONDITIONED), int(Status.OK))
    status = jnp.where(rcond <= 0, int(Status.SINGULAR), status)
    status = jnp.where(fin, status, int(Status.NONFINITE)).astype(jnp.int8)
    rcond = jnp.where(fin, rcond, jnp.nan)
    return X, rcond, status


@functools.lru_cache(maxsize=1)
def _compiled():
    import jax

    return jax.jit(guarded_solve_core)


def _dummy(shape) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype=bool), tuple(shape))


def _run_guard(A, B, pol, dtype, threshold, op, vector, scalar, return_info):
    jnp = _jnp()
    tracing = _is_tracer(A) or _is_tracer(B)
    if tracing and pol.on_ill != "ignore":
        raise DTypeError(
            "under jax.jit the guard cannot raise: pass on_ill='ignore', return_info=True and "
            "check info.status outside the traced function",
            dtype=dtype,
        )
    fn = guarded_solve_core if tracing else _compiled()
    X, rcond, status = fn(A, B, threshold)
    method = np.full(tuple(A.shape[:-2]), "lu", dtype=object)
    lam = np.full(tuple(A.shape[:-2]), np.nan)
    if not tracing and pol.on_ill != "ignore":
        st = np.asarray(status)
        if np.any(st != Status.OK):
            bk = S._Batch(status=st, rcond=np.asarray(rcond),
                          pivots=np.zeros(st.shape, dtype=np.int64), method=method, lam=lam)
            a_host = np.asarray(A)
            if np.any(st == Status.NONFINITE):
                from .._checks import nonfinite_entries

                src = a_host if not np.isfinite(a_host).all() else np.asarray(B)
                where, count, _ = nonfinite_entries(src)
                bk.nonfinite = ("A" if src is a_host else "b", where, count)
            replace = S._apply_policy(bk, pol, dtype, threshold)
            idx = S.marked(replace)
            if idx:
                Xh = np.array(X)
                b_host = np.asarray(B)
                for ix in idx:
                    if op == "solve":
                        Xh[ix] = S._solve_numpy(a_host[ix], b_host[ix], "gen", pol, False)
                    else:
                        Xh[ix] = S._inv_numpy(a_host[ix], "gen", pol, False)
                    method[ix] = pol.on_ill
                X = jnp.asarray(Xh)
    out = X[..., 0] if vector else X
    if not return_info:
        return out
    cond = jnp.where(rcond > 0, 1.0 / jnp.where(rcond > 0, rcond, 1.0), jnp.inf)
    cond = jnp.where(jnp.isnan(rcond), jnp.nan, cond)
    avail = digits_available(dtype)
    lost = jnp.where(jnp.isinf(cond), avail, jnp.clip(jnp.log10(cond), 0.0, avail))
    return out, SolveInfo(
        rcond=rcond, cond_estimate=cond, digits_lost=lost, digits_available=avail,
        threshold=threshold, status=status, method=method.item() if scalar else method,
        dtype=np.dtype(dtype).name,
    )


def solve(A, b, *, assume_a="gen", min_rcond=None, max_digits_lost=None, on_ill=None,
          return_info=False):
    jnp = _jnp()
    kind = S._assume(assume_a)
    if kind != "gen":
        return _run_host("solve", A, b, assume_a=assume_a, min_rcond=min_rcond,
                         max_digits_lost=max_digits_lost, on_ill=on_ill,
                         return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    A, b = jnp.asarray(A), jnp.asarray(b)
    as_stack(_dummy(A.shape))
    _, vector, batch = rhs(tuple(A.shape), _dummy(b.shape))
    dtype = result_dtype(np.dtype(A.dtype), np.dtype(b.dtype))
    threshold = pol.threshold(dtype)
    n = A.shape[-1]
    B = b.astype(dtype).reshape(n, 1) if vector else b.astype(dtype)
    A_b = jnp.broadcast_to(A.astype(dtype), (*batch, n, n))
    B_b = jnp.broadcast_to(B, (*batch, n, B.shape[-1]))
    if n == 0:
        return _run_host("solve", np.zeros(A_b.shape, dtype), np.zeros(B_b.shape, dtype),
                         min_rcond=min_rcond, max_digits_lost=max_digits_lost,
                         on_ill=on_ill, return_info=return_info)
    return _run_guard(A_b, B_b, pol, dtype, threshold, "solve", vector, not batch,
                      return_info)


def inv(A, *, assume_a="gen", min_rcond=None, max_digits_lost=None, on_ill=None,
        return_info=False):
    jnp = _jnp()
    kind = S._assume(assume_a)
    if kind != "gen":
        return _run_host("inv", A, assume_a=assume_a, min_rcond=min_rcond,
                         max_digits_lost=max_digits_lost, on_ill=on_ill,
                         return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    A = jnp.asarray(A)
    as_stack(_dummy(A.shape))
    dtype = result_dtype(np.dtype(A.dtype))
    threshold = pol.threshold(dtype)
    A = A.astype(dtype)
    n = A.shape[-1]
    if n == 0:
        return _run_host("inv", np.zeros(A.shape, dtype), min_rcond=min_rcond,
                         max_digits_lost=max_digits_lost, on_ill=on_ill,
                         return_info=return_info)
    eye = jnp.broadcast_to(jnp.eye(n, dtype=A.dtype), A.shape)
    return _run_guard(A, eye, pol, dtype, threshold, "inv", False, A.ndim == 2, return_info)


def cond_estimate(A, *, p=1):
    return _run_host("cond_estimate", A, p=p)


def cond(A, *, p=None, exact=True):
    return _run_host("cond", A, p=p, exact=exact)


def pinv(A, **kw):
    return _run_host("pinv", A, **kw)


def lstsq(A, b, **kw):
    return _run_host("lstsq", A, b, **kw)


def tikhonov(A, b, **kw):
    return _run_host("tikhonov", A, b, **kw)
