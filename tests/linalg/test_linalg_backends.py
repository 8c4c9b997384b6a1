"""Cross-backend tests: torch (CPU) and TensorFlow (CPU) tensors give the same errors and
answers as NumPy on the Hilbert and batch cases; JAX is tested when installed."""

from __future__ import annotations

import numpy as np
import pytest

import numdoctor.linalg as la
from numdoctor.linalg import problems

HILBERT_N = range(2, 14)


def numpy_outcome(A, b, **kw):
    try:
        x, info = la.solve(A, b, return_info=True, **kw)
        return "ok", x, info.rcond
    except la.GuardError as e:
        return type(e), None, getattr(e, "rcond", None)


def host(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def check_same_as_numpy(to_backend, backend_type):
    for n in HILBERT_N:
        A, b, _ = problems.hilbert(n)
        kind, x_ref, rc_ref = numpy_outcome(A, b)
        try:
            x, info = la.solve(to_backend(A), to_backend(b), return_info=True)
            got = "ok"
        except la.GuardError as e:
            got = type(e)
            # κ estimates from the same iteration on the same factors: same order of magnitude
            assert float(e.rcond) == pytest.approx(rc_ref, rel=0.5), n
        assert got == kind, f"n={n}: {got} vs numpy {kind}"
        if got == "ok":
            assert isinstance(x, backend_type)
            np.testing.assert_allclose(host(x), x_ref, rtol=float(host(info.cond_estimate))
                                       * 1e-15)
            assert float(host(info.rcond)) == pytest.approx(rc_ref, rel=0.5)


def check_batch_same_as_numpy(to_backend, hilbert_batch):
    with pytest.raises(la.SingularMatrixError) as ref:
        la.solve(hilbert_batch, np.ones(4))
    with pytest.raises(la.SingularMatrixError) as got:
        la.solve(to_backend(hilbert_batch), to_backend(np.ones(4)))
    assert got.value.indices == ref.value.indices == [(1,), (2,)]
    np.testing.assert_array_equal(host(got.value.status), ref.value.status)
    x_ref, info_ref = la.solve(hilbert_batch, np.ones(4), on_ill="ignore", return_info=True)
    x, info = la.solve(to_backend(hilbert_batch), to_backend(np.ones(4)), on_ill="ignore",
                       return_info=True)
    np.testing.assert_array_equal(host(info.status), info_ref.status)
    good = [0, 3]
    np.testing.assert_allclose(host(x)[good], x_ref[good], rtol=1e-12)
    assert not info.ok
    with pytest.raises(la.SingularMatrixError):
        info.raise_for_status()
    for on_ill in ("tikhonov", "lstsq"):
        xf_ref = la.solve(hilbert_batch, np.ones(4), on_ill=on_ill)
        xf = la.solve(to_backend(hilbert_batch), to_backend(np.ones(4)), on_ill=on_ill)
        np.testing.assert_allclose(host(xf), xf_ref, rtol=1e-6, atol=1e-9)


# -- torch -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed (optional backend)")


def test_torch_hilbert_same_as_numpy(torch):
    check_same_as_numpy(lambda a: torch.from_numpy(np.asarray(a)), torch.Tensor)


def test_torch_batch_same_as_numpy(torch, hilbert_batch):
    check_batch_same_as_numpy(lambda a: torch.from_numpy(np.asarray(a)), hilbert_batch)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_torch_dtypes_and_ops(torch, rng, dtype):
    n = 6
    A = rng.standard_normal((2, n, n)) + (2 * n) * np.eye(n)
    if "complex" in dtype:
        A = A + 1j * rng.standard_normal((2, n, n))
    A = A.astype(dtype)
    b = np.ones((2, n, 1), dtype=dtype)
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-10
    x = la.solve(At, bt)
    assert x.dtype == At.dtype and x.device == At.device
    np.testing.assert_allclose(x.numpy(), la.solve(A, b), rtol=tol, atol=tol)
    np.testing.assert_allclose(la.inv(At).numpy(), la.inv(A), rtol=tol, atol=tol)
    est = la.cond_estimate(At)
    assert isinstance(est, torch.Tensor)
    np.testing.assert_allclose(est.numpy(), la.cond_estimate(A), rtol=0.5)
    P = A[0] @ A[0].conj().T
    np.testing.assert_allclose(la.solve(torch.from_numpy(P), torch.from_numpy(b[0]),
                                        assume_a="pos").numpy(),
                               la.solve(P, b[0], assume_a="pos"), rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(la.pinv(At).numpy(), la.pinv(A), rtol=tol, atol=tol)


def test_torch_ignore_mode_keeps_info_on_device(torch, hilbert_batch):
    _x, info = la.solve(torch.from_numpy(hilbert_batch), torch.ones(4, dtype=torch.float64),
                       on_ill="ignore", return_info=True)
    assert isinstance(info.status, torch.Tensor) and isinstance(info.rcond, torch.Tensor)
    assert isinstance(info.backward_error, torch.Tensor)
    assert info.status.tolist() == [0, 2, 1, 0]


def test_torch_nonfinite_and_shapes(torch):
    A = torch.eye(3, dtype=torch.float64)
    A[1, 1] = float("nan")
    with pytest.raises(la.NonFiniteError) as ei:
        la.solve(A, torch.ones(3, dtype=torch.float64))
    assert ei.value.where == [(1, 1)]
    with pytest.raises(la.NonFiniteError):
        la.cond_estimate(A)
    with pytest.raises(la.ShapeError):
        la.solve(torch.ones(3, 4), torch.ones(3))
    # a Python list is a float64 array, and promotion follows NumPy's rules
    assert la.solve(torch.eye(2), [1.0, 2.0]).dtype == torch.float64
    assert la.solve(np.eye(2, dtype=np.float32), [1.0, 2.0]).dtype == np.float64


def test_torch_tikhonov_and_float32_guard(torch):
    A, b, _ = problems.shaw(32)
    res = la.tikhonov(torch.from_numpy(A), torch.from_numpy(b + 1e-3))
    ref = la.tikhonov(A, b + 1e-3)
    assert isinstance(res.x, torch.Tensor)
    np.testing.assert_allclose(res.x.numpy(), ref.x)
    H = torch.from_numpy(problems.hilbert(5).A).float()
    with pytest.raises(la.IllConditionedError, match="float32"):
        la.solve(H, torch.ones(5))


# -- TensorFlow ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="tensorflow not installed (optional backend)")


@pytest.mark.slow
def test_tf_hilbert_same_as_numpy(tf):
    check_same_as_numpy(lambda a: tf.constant(np.asarray(a)), type(tf.constant(1.0)))


@pytest.mark.slow
def test_tf_batch_same_as_numpy(tf, hilbert_batch):
    check_batch_same_as_numpy(lambda a: tf.constant(np.asarray(a)), hilbert_batch)


@pytest.mark.slow
def test_tf_guard_runs_before_tf_linalg(tf, monkeypatch):
    # A near-singular input must get our error without tf.linalg ever being called.
    def boom(*a, **k):
        raise AssertionError("tf.linalg reached")

    monkeypatch.setattr(tf.linalg, "solve", boom)
    monkeypatch.setattr(tf.linalg, "inv", boom)
    H = tf.constant(problems.hilbert(12).A)
    with pytest.raises(la.IllConditionedError):
        la.solve(H, tf.ones(12, dtype=tf.float64))
    with pytest.raises(la.IllConditionedError):
        la.inv(H)
    x = la.solve(tf.constant(np.eye(3)), tf.ones(3, dtype=tf.float64))
    assert isinstance(x, type(tf.constant(1.0)))
    v = tf.Variable(np.diag([2.0, 4.0]))
    np.testing.assert_allclose(la.solve(v, tf.ones(2, dtype=tf.float64)).numpy(), [0.5, 0.25])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_tf_dtypes(tf, rng, dtype):
    n = 5
    A = rng.standard_normal((3, n, n)) + (2 * n) * np.eye(n)
    if "complex" in dtype:
        A = A + 1j * rng.standard_normal((3, n, n))
    A = A.astype(dtype)
    b = np.ones(n, dtype=dtype)
    x = la.solve(tf.constant(A), tf.constant(b))
    assert x.dtype.name == dtype
    tol = 1e-5 if dtype in ("float32", "complex64") else 1e-12
    np.testing.assert_allclose(x.numpy(), la.solve(A, b), rtol=tol)
    np.testing.assert_allclose(la.inv(tf.constant(A)).numpy(), la.inv(A), rtol=tol)
    np.testing.assert_allclose(la.cond_estimate(tf.constant(A)).numpy(), la.cond_estimate(A))


@pytest.mark.slow
def test_tf_symbolic_tensor_is_refused(tf):
    @tf.function
    def f(a):
        return la.solve(a, tf.ones(2, dtype=tf.float64))

    # AutoGraph re-raises our DTypeError wrapped in its StagingError
    with pytest.raises(Exception, match="DTypeError: symbolic TensorFlow tensor"):
        f(tf.constant(np.eye(2)))


# -- JAX -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jnp():
    pytest.importorskip("jax", reason="jax not installed: the JAX backend is untested here")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp


def test_jax_hilbert_same_as_numpy(jnp):
    check_same_as_numpy(lambda a: jnp.asarray(a), type(jnp.asarray(1.0)))


def test_jax_batch_same_as_numpy(jnp, hilbert_batch):
    check_batch_same_as_numpy(lambda a: jnp.asarray(a), hilbert_batch)


def test_jax_under_jit(jnp):
    import jax

    @jax.jit
    def f(a, b):
        x, info = la.solve(a, b, on_ill="ignore", return_info=True)
        return x, info.status

    _x, status = f(jnp.asarray(problems.hilbert(12).A), jnp.ones(12))
    assert int(status) == la.Status.ILL_CONDITIONED
    with pytest.raises(la.DTypeError, match="on_ill='ignore'"):
        jax.jit(lambda a, b: la.solve(a, b))(jnp.eye(2), jnp.ones(2))


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_jax_dtypes_and_ops(jnp, rng, dtype):
    n = 5
    A = rng.standard_normal((2, n, n)) + (2 * n) * np.eye(n)
    if "complex" in dtype:
        A = A + 1j * rng.standard_normal((2, n, n))
    A = A.astype(dtype)
    b = np.ones(n, dtype=dtype)
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-10
    x, info = la.solve(jnp.asarray(A), jnp.asarray(b), return_info=True)
    assert str(x.dtype) == dtype
    np.testing.assert_allclose(np.asarray(x), la.solve(A, b), rtol=tol)
    np.testing.assert_allclose(np.asarray(info.rcond), la.solve(A, b, return_info=True)[1].rcond,
                               rtol=0.5)
    np.testing.assert_allclose(np.asarray(la.inv(jnp.asarray(A))), la.inv(A), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(la.pinv(jnp.asarray(A))), la.pinv(A), rtol=tol,
                               atol=tol)
    with pytest.raises(la.IllConditionedError):
        la.inv(jnp.asarray(problems.hilbert(12).A))
