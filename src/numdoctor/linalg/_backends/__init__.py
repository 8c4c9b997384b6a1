"""Backend selection from the input's type, without importing any framework.

A torch / TensorFlow / JAX input is recognized by the module its type lives in
(``type(x).__module__``), so ``import numdoctor.linalg`` and NumPy calls never import a
framework; a backend module (which imports its framework) is loaded only when one of its
tensors arrives — by which time the user has imported the framework anyway.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from .._errors import DTypeError

_ROOTS = {
    "torch": "torch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "jax": "jax",
    "jaxlib": "jax",
}


def backend_name(x: Any) -> str | None:
    """``"torch"``, ``"tensorflow"``, ``"jax"`` or ``None`` (NumPy / anything array-like)."""
    root = (type(x).__module__ or "").split(".", 1)[0]
    return _ROOTS.get(root)


def dispatch(*arrays: Any) -> ModuleType | None:
    """The backend module for these inputs, or ``None`` for the NumPy reference path."""
    names = {n for n in (backend_name(a) for a in arrays) if n is not None}
    if not names:
        return None
    if len(names) > 1:
        raise DTypeError(
            f"inputs mix frameworks ({', '.join(sorted(names))}); convert them to one",
            dtype=None,
        )
    return importlib.import_module(f"._{names.pop()}", __name__)
