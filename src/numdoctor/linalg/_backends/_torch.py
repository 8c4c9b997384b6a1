"""PyTorch backend: factorization with ``*_ex`` info and a condition estimate on the device.

``solve``/``inv``/``cond_estimate`` run entirely on the tensor's device: ``lu_factor_ex``
(or ``cholesky_ex``) reports zero pivots per matrix without a host synchronisation, and the
1-norm of the inverse is estimated by Higham's iteration with a fixed number of steps (no
data-dependent branching), batched with ``lu_solve``. The only host synchronisation is one
per call, to decide whether to raise, warn or fall back — none at all with
``on_ill="ignore"``, where the per-matrix status stays a device tensor in the info object
until you ask (``info.ok``, ``info.raise_for_status()``).

``assume_a="sym"/"her"``, ``cond(exact=True)``, ``pinv``, ``lstsq``, ``tikhonov`` and the
fallback answers go through the NumPy reference path on the host and come back on the
input's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _solve as S
from .._checks import as_stack, nonfinite_entries, rhs
from .._dtypes import digits_available, result_dtype
from .._errors import NonFiniteError
from .._info import SolveInfo
from .._lapack import _alt_vector
from .._policy import resolve
from .._report import Status
from . import _host

#: Sign-vector steps of the device-side estimator (xLACN2 stops after at most 4).
ESTIMATOR_STEPS = 4


def _torch():
    import torch

    return torch


def _np_dtype(t: Any) -> np.dtype:
    torch = _torch()
    if t == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty(0, dtype=t).numpy().dtype


def _t_dtype(d: np.dtype) -> Any:
    torch = _torch()
    return {
        "float32": torch.float32,
        "float64": torch.float64,
        "complex64": torch.complex64,
        "complex128": torch.complex128,
    }[np.dtype(d).name]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] == "torch"


def _to_numpy(x: Any) -> Any:
    if not _is_torch(x):
        return x
    x = x.detach()
    if x.dtype == _torch().bfloat16:
        x = x.float()
    if x.is_complex():
        x = x.resolve_conj()
    return x.resolve_neg().cpu().numpy()


def _device_of(*xs: Any) -> Any:
    return next((x.device for x in xs if _is_torch(x)), None)


def _run_host(op: str, *args: Any, **kwargs: Any) -> Any:
    torch = _torch()
    device = _device_of(*args)

    def back(arr: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(arr)).to(device)

    return _host.run(op, args, kwargs, _to_numpy, back)


def _as_tensor(x: Any, device: Any) -> Any:
    torch = _torch()
    return x if _is_torch(x) else torch.as_tensor(np.asarray(x), device=device)


def _sign(x: Any) -> Any:
    torch = _torch()
    if x.is_complex():
        ax = x.abs()
        return torch.where(ax > 0, x / torch.where(ax > 0, ax, torch.ones_like(ax)),
                           torch.ones_like(x))
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _inv_norm_estimate(solve, solve_h, n: int, shape: tuple, dtype: Any, device: Any) -> Any:
    """Batched lower bound on ‖A⁻¹‖₁: xLACN2's iteration with a fixed step count."""
    torch = _torch()
    start = torch.empty((*shape, n, 2), dtype=dtype, device=device)
    start[..., 0] = 1.0 / n
    start[..., 1] = torch.as_tensor(_alt_vector(n), device=device).to(dtype)
    Y = solve(start)
    x = Y[..., 0]
    est = x.abs().sum(-1)
    alt_est = 2.0 * Y[..., 1].abs().sum(-1) / (3.0 * n)
    for _ in range(ESTIMATOR_STEPS):
        z = solve_h(_sign(x).unsqueeze(-1))[..., 0]
        j = z.abs().argmax(-1)
        ej = torch.nn.functional.one_hot(j, n).to(dtype)
        x = solve(ej.unsqueeze(-1))[..., 0]
        est = torch.maximum(est, x.abs().sum(-1))
    est = torch.maximum(est, alt_est)
    return torch.nan_to_num(est.to(torch.float64), nan=float("inf"))


def _factor(A: Any, kind: str):
    """Factorize a clean batch; return (solve, solve_h, anorm, info) as device tensors."""
    torch = _torch()
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device).expand_as(A)
    if kind == "pos":
        # Like LAPACK, read only the upper triangle; the diagonal of a Hermitian matrix is real.
        H = torch.triu(A) + torch.triu(A, 1).mH
        if H.is_complex():
            d = torch.diagonal(H, dim1=-2, dim2=-1)
            H = H - torch.diag_embed(d - d.real.to(H.dtype))
        anorm = torch.linalg.matrix_norm(H, ord=1)
        L, info = torch.linalg.cholesky_ex(H)
        Lc = torch.where((info > 0)[..., None, None], eye, L)

        def solve_cholesky(X):
            return torch.cholesky_solve(X, Lc)

        return solve_cholesky, solve_cholesky, anorm, info
    anorm = torch.linalg.matrix_norm(A, ord=1)
    LU, piv, info = torch.linalg.lu_factor_ex(A)
    sing = info > 0
    # A singular matrix gets an identity factorization so the shared batched solves stay
    # finite; its answer is masked out afterwards.
    LUc = torch.where(sing[..., None, None], eye, LU)
    ident = torch.arange(1, n + 1, dtype=piv.dtype, device=piv.device).expand_as(piv)
    pivc = torch.where(sing[..., None], ident, piv)

    def solve(X):
        return torch.linalg.lu_solve(LUc, pivc, X)

    def solve_h(X):
        return torch.linalg.lu_solve(LUc, pivc, X, adjoint=True)

    return solve, solve_h, anorm, info


def _guarded(A: Any, kind: str, threshold: float, rhs_: Any | None):
    """Device-side guard: answer (A⁻¹·rhs or A⁻¹), rcond, status, pivots; no host sync."""
    torch = _torch()
    n = A.shape[-1]
    batch = tuple(A.shape[:-2])
    finA = torch.isfinite(A).flatten(-2).all(-1)
    eye = torch.eye(n, dtype=A.dtype, device=A.device).expand_as(A)
    Ac = torch.where(finA[..., None, None], A, eye)
    solve, solve_h, anorm, info = _factor(Ac, kind)
    est = _inv_norm_estimate(solve, solve_h, n, batch, A.dtype, A.device)
    prod = anorm.to(torch.float64) * est
    rcond = torch.where((prod > 0) & torch.isfinite(prod), 1.0 / prod, torch.zeros_like(prod))
    rcond = torch.where(info > 0, torch.zeros_like(rcond), rcond)
    rhs_t = eye if rhs_ is None else rhs_
    X = solve(rhs_t)
    fin = finA
    if rhs_ is not None:
        fin = fin & torch.isfinite(rhs_).flatten(-2).all(-1)
    status = torch.zeros(batch, dtype=torch.int8, device=A.device)
    status = torch.where(rcond < threshold, int(Status.ILL_CONDITIONED), status)
    zero_code = Status.NOT_POSITIVE_DEFINITE if kind == "pos" else Status.SINGULAR
    status = torch.where(rcond <= 0, int(Status.SINGULAR), status)
    status = torch.where(info > 0, int(zero_code), status)
    status = torch.where(fin, status, int(Status.NONFINITE)).to(torch.int8)
    rcond = torch.where(fin, rcond, torch.full_like(rcond, float("nan")))
    bad = (info > 0) | ~fin
    X = torch.where(bad[..., None, None], torch.full_like(X, float("nan")), X)
    return X, rcond, status, info.to(torch.int64)


def _nonfinite_detail(A: Any, B: Any | None) -> tuple[str, list, int] | None:
    a = _to_numpy(A)
    if not np.isfinite(a).all():
        where, count, _ = nonfinite_entries(a)
        return "A", where, count
    if B is not None:
        b = _to_numpy(B)
        where, count, _ = nonfinite_entries(b)
        return "b", where, count
    return None


def _policy_on_host(X, A, B, status, rcond, pivots, pol, dtype, threshold, kind, op):
    """One host sync: raise, warn or compute fallbacks exactly as the NumPy path does."""
    torch = _torch()
    st = status.cpu().numpy()
    method = np.full(st.shape, S._METHOD[kind], dtype=object)
    lam = np.full(st.shape, np.nan)
    if pol.on_ill == "ignore" or not np.any(st != Status.OK):
        return X, method, lam
    bk = S._Batch(status=st, rcond=rcond.cpu().numpy(), pivots=pivots.cpu().numpy(),
                  method=method, lam=lam)
    if np.any(st == Status.NONFINITE):
        bk.nonfinite = _nonfinite_detail(A, B)
    replace = S._apply_policy(bk, pol, dtype, threshold)
    idx = S.marked(replace)
    if idx:
        X = X.clone()
        a_host = _to_numpy(A)
        b_host = None if B is None else _to_numpy(B)
        for ix in idx:
            if op == "solve":
                sub, _ = S._solve_numpy(a_host[ix], b_host[ix], kind, pol, True)
                # The host path re-applies the fallback on this one matrix.
                X[ix] = torch.from_numpy(np.ascontiguousarray(sub)).to(X.device)
            else:
                sub, info = S._inv_numpy(a_host[ix], kind, pol, True)
                X[ix] = torch.from_numpy(np.ascontiguousarray(sub)).to(X.device)
                if info.lam is not None:
                    lam[ix] = info.lam
            method[ix] = pol.on_ill
    return X, bk.method, lam


def _info(rcond, status, pivots, method, lam, dtype, threshold, scalar, **extra):
    torch = _torch()
    cond = torch.where(rcond > 0, 1.0 / rcond, torch.full_like(rcond, float("inf")))
    cond = torch.where(torch.isnan(rcond), rcond, cond)
    avail = digits_available(dtype)
    lost = torch.clamp(torch.log10(cond), 0.0, avail)
    lost = torch.where(torch.isinf(cond), torch.full_like(lost, avail), lost)
    has_lam = bool(np.any(method == "tikhonov"))
    return SolveInfo(
        rcond=rcond, cond_estimate=cond, digits_lost=lost, digits_available=avail,
        threshold=threshold, status=status,
        method=(method.item() if scalar else method), dtype=np.dtype(dtype).name,
        lam=((lam.item() if scalar else lam) if has_lam else None), pivots=pivots, **extra,
    )


def _dummy(shape) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype=bool), tuple(shape))


def solve(A, b, *, assume_a="gen", min_rcond=None, max_digits_lost=None, on_ill=None,
          return_info=False):
    torch = _torch()
    kind = S._assume(assume_a)
    if kind in ("sym", "her"):
        return _run_host("solve", A, b, assume_a=assume_a, min_rcond=min_rcond,
                         max_digits_lost=max_digits_lost, on_ill=on_ill,
                         return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    device = _device_of(A, b)
    At, bt = _as_tensor(A, device), _as_tensor(b, device)
    as_stack(_dummy(At.shape))
    _, vector, batch = rhs(tuple(At.shape), _dummy(bt.shape))
    dtype = result_dtype(_np_dtype(At.dtype), _np_dtype(bt.dtype))
    tdt = _t_dtype(dtype)
    threshold = pol.threshold(dtype)
    n = At.shape[-1]
    B = bt.to(tdt).reshape(n, 1) if vector else bt.to(tdt)
    k = B.shape[-1]
    A_b = At.to(tdt).expand((*batch, n, n))
    B_b = B.expand((*batch, n, k))
    if n == 0:
        X = torch.empty((*batch, 0, k), dtype=tdt, device=device)
        out = X[..., 0] if vector else X
        if not return_info:
            return out
        return out, S._solve_numpy(np.zeros((*batch, 0, 0), dtype), np.zeros(
            (*batch, 0, k), dtype), kind, pol, True)[1]
    X, rcond, status, pivots = _guarded(A_b, kind, threshold, B_b)
    X, method, lam = _policy_on_host(X, A_b, B_b, status, rcond, pivots, pol, dtype,
                                     threshold, kind, "solve")
    out = X[..., 0] if vector else X
    if not return_info:
        return out
    R = B_b - A_b @ X
    r_inf = R.abs().amax(-2)
    a_inf = A_b.abs().sum(-1).amax(-1)
    den = a_inf[..., None] * X.abs().amax(-2) + B_b.abs().amax(-2)
    eta = torch.where(den > 0, r_inf / torch.where(den > 0, den, torch.ones_like(den)),
                      torch.zeros_like(den)).amax(-1)
    rn = torch.linalg.vector_norm(R, dim=-2)
    bn = torch.linalg.vector_norm(B_b, dim=-2)
    rel = torch.where(bn > 0, rn / torch.where(bn > 0, bn, torch.ones_like(bn)), rn).amax(-1)
    return out, _info(rcond, status, pivots, method, lam, dtype, threshold, not batch,
                      backward_error=eta, relative_residual=rel)


def inv(A, *, assume_a="gen", min_rcond=None, max_digits_lost=None, on_ill=None,
        return_info=False):
    torch = _torch()
    kind = S._assume(assume_a)
    if kind in ("sym", "her"):
        return _run_host("inv", A, assume_a=assume_a, min_rcond=min_rcond,
                         max_digits_lost=max_digits_lost, on_ill=on_ill,
                         return_info=return_info)
    pol = resolve(min_rcond, max_digits_lost, on_ill)
    At = _as_tensor(A, _device_of(A))
    as_stack(_dummy(At.shape))
    dtype = result_dtype(_np_dtype(At.dtype))
    tdt = _t_dtype(dtype)
    threshold = pol.threshold(dtype)
    At = At.to(tdt)
    batch = tuple(At.shape[:-2])
    if At.shape[-1] == 0:
        X = torch.empty(At.shape, dtype=tdt, device=At.device)
        if not return_info:
            return X
        return X, S._inv_numpy(np.zeros(At.shape, dtype), kind, pol, True)[1]
    X, rcond, status, pivots = _guarded(At, kind, threshold, None)
    X, method, lam = _policy_on_host(X, At, None, status, rcond, pivots, pol, dtype,
                                     threshold, kind, "inv")
    if not return_info:
        return X
    return X, _info(rcond, status, pivots, method, lam, dtype, threshold, not batch)


def cond_estimate(A, *, p=1):
    from .._cond import _NORMS

    torch = _torch()
    try:
        norm = _NORMS[p]
    except (KeyError, TypeError):
        raise ValueError(f"cond_estimate supports p=1 or p=inf, got {p!r}") from None
    At = _as_tensor(A, _device_of(A))
    as_stack(_dummy(At.shape))
    dtype = result_dtype(_np_dtype(At.dtype))
    At = At.to(_t_dtype(dtype))
    if norm == "I":
        At = At.mT  # κ∞(A) = κ₁(Aᵀ)
    if At.shape[-1] == 0:
        return torch.ones(At.shape[:-2], dtype=torch.float64, device=At.device)
    if not bool(torch.isfinite(At).all()):  # the one host sync of this call
        a = _to_numpy(At)
        where, count, per = nonfinite_entries(a)
        raise NonFiniteError(
            f"A has {count} non-finite entr{'y' if count == 1 else 'ies'}, first at "
            f"{', '.join(map(str, where[:5]))}; the condition number is undefined",
            operand="A", where=where, count=count,
            indices=[tuple(int(i) for i in ix) for ix in np.argwhere(per)] if per.ndim else [()],
        )
    _, rcond, _, _ = _guarded(At, "gen", 0.0, At[..., :, :1])
    return torch.where(rcond > 0, 1.0 / rcond, torch.full_like(rcond, float("inf")))


def cond(A, *, p=None, exact=True):
    if not exact and p not in (None, 2):
        return cond_estimate(A, p=p)
    return _run_host("cond", A, p=p, exact=exact)


def pinv(A, **kw):
    return _run_host("pinv", A, **kw)


def lstsq(A, b, **kw):
    return _run_host("lstsq", A, b, **kw)


def tikhonov(A, b, **kw):
    return _run_host("tikhonov", A, b, **kw)
