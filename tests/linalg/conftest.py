"""Shared fixtures for the numdoctor.linalg tests."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

# The helpers module is imported by name; make that work under any --import-mode.
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from numdoctor.linalg import problems


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def hilbert_batch() -> np.ndarray:
    """A batch with one good, one singular, one ill-conditioned and one fine 4×4 matrix."""
    q, _ = np.linalg.qr(problems.hilbert(4).A + np.arange(16.0).reshape(4, 4))
    ill = q @ np.diag([1.0, 1e-3, 1e-8, 1e-14]) @ q.T  # κ ≈ 1e14: 14 of 16 digits lost
    return np.stack([np.eye(4), np.zeros((4, 4)), ill, np.diag([1.0, 2.0, 3.0, 4.0])])
