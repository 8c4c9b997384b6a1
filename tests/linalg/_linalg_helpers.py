"""Helpers shared by the numdoctor.linalg tests (imported by module name: the test tree has
no packages, so this file name is kept unique)."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]

#: Relative tolerance for comparing well-conditioned answers, per dtype.
RTOL = {
    np.dtype(np.float32): 2e-4,
    np.dtype(np.complex64): 2e-4,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
}


def random_matrix(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def well_conditioned(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Diagonally dominant, so κ is small whatever the draw."""
    a = random_matrix(rng, shape, dtype)
    n = shape[-1]
    return (a + (2 * n + 2) * np.eye(n)).astype(dtype)
