"""Notice when a numerical module is imported a second time in one process.

`importlib.reload(numpy)` and "delete from sys.modules, import again" both ask the import
system to *find* a module it already loaded once; ordinary imports of a loaded module never
do (they are answered from sys.modules). A finder placed first on `sys.meta_path` therefore
sees exactly the re-imports, warns, and lets the normal finders carry on.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

# Top-level packages whose native state does not survive a second import.
WATCHED = frozenset({
    "numpy", "scipy", "torch", "tensorflow", "jax", "jaxlib", "sklearn", "pandas", "numba",
    "numexpr", "cupy", "xgboost", "lightgbm", "h5py", "matplotlib",
})


class ReloadWarning(UserWarning):
    """A numerical module was imported a second time in this process (RELOAD001)."""


class ReloadWatcher:
    """A meta-path finder that never finds anything; it only reports re-imports."""

    def __init__(self, on_reload: Callable[[str, str], None] | None = None) -> None:
        self.active = True
        self.seen = {name for name in WATCHED if name in sys.modules}
        self.on_reload = on_reload or _warn

    def find_spec(self, name, path=None, target=None):
        if not self.active or name not in WATCHED:
            return None
        if target is not None or name in sys.modules:
            self.on_reload(name, "reloaded with importlib.reload()")
        elif name in self.seen:
            self.on_reload(name, "imported again after being removed from sys.modules")
        self.seen.add(name)
        return None

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        self.active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _warn(name: str, how: str) -> None:
    warnings.warn(
        ReloadWarning(
            f"numdoctor RELOAD001: {name} was {how}. Its compiled extension modules cannot be "
            "loaded twice: the process now mixes old and new module objects (NumPy warns "
            "'The NumPy module was reloaded'). Restart the interpreter instead of reloading."
        ),
        stacklevel=3,
    )
