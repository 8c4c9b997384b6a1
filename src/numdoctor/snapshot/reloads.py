"""Modules executed twice in this process.

Reload evidence, all read after the fact from the live process:

- `importlib.reload(m)` re-finds the spec and executes it through `_bootstrap._exec`, which,
  unlike the normal `_load_unlocked` path, never sets `spec._initializing`. A module in
  `sys.modules` whose spec lacks that attribute was therefore reloaded (or executed by hand
  with `module_from_spec` + `exec_module`, which is a second import too when it replaces
  the entry). Works whatever warning filters were in effect.
- NumPy's `_reload_guard()` warns "The NumPy module was reloaded (imported a second time)";
  with the default filters the warning leaves its text in some module's `__warningregistry__`.
- A module object that some other module still references, but that is no longer the one in
  `sys.modules` under its name: the package was purged from `sys.modules` and imported again,
  so two copies of its state live on.
- Two different module objects in `sys.modules` loaded from the same file (a package imported
  under two names, e.g. through a sys.path entry inside site-packages).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

# Runs inside the inspected process (numdoctor.snapshot.live): evidence comes back as plain
# dicts with ModuleReload's fields, and nothing heavier than the standard library is imported.

# Import names of the numerical packages whose reloads and shadowed copies matter.
NUMERICAL_PACKAGES = (
    "numpy", "scipy", "sklearn", "pandas", "torch", "tensorflow", "keras", "jax", "jaxlib",
    "numba", "llvmlite", "numexpr", "bottleneck", "h5py", "tables", "pyarrow", "matplotlib",
    "cupy", "xgboost", "lightgbm", "skimage", "statsmodels", "threadpoolctl", "joblib",
    "ml_dtypes", "cv2", "dask", "distributed", "xarray", "sympy", "mkl", "numcodecs",
)

_NUMPY_RELOAD = "The NumPy module was reloaded"


def _reload(*, module: str, how: str, detail: str) -> dict[str, str]:
    return {"module": module, "how": how, "detail": detail}


def _is_numerical(name: str) -> bool:
    return name.partition(".")[0] in NUMERICAL_PACKAGES


def find_reloads() -> list[dict[str, str]]:
    modules = [(name, module) for name, module in list(sys.modules.items())
               if isinstance(module, ModuleType)]
    found: list[dict[str, str]] = []
    found += _reloaded_specs(modules)
    found += _numpy_warning(modules)
    found += _duplicate_files(modules)
    found += _stale_references(modules)
    return found


def _reloaded_specs(modules: list[tuple[str, ModuleType]]) -> list[dict[str, str]]:
    # The marker only means something if this interpreter's import system sets it: this very
    # module was imported normally, so its spec must carry it.
    own = getattr(sys.modules.get(__name__), "__spec__", None)
    if own is None or not hasattr(own, "_initializing"):
        return []
    found = []
    for name, module in modules:
        spec = getattr(module, "__spec__", None)
        if spec is None or not _is_numerical(name) or spec.name != name:
            continue
        state = getattr(spec, "loader_state", None)
        if isinstance(state, dict) and "__class__" in state:
            continue  # first loaded through importlib.util.LazyLoader (lazy_loader, skimage)
        if not hasattr(spec, "_initializing"):
            found.append(_reload(
                module=name, how="reload",
                detail=f"{name} was executed again after its first import, by "
                       "importlib.reload() or by hand with exec_module (its __spec__ never went "
                       "through the normal import path)",
            ))
    # A reloaded package usually re-imports nothing else; report packages, not every child.
    names = {r["module"] for r in found}
    return [r for r in found if not any(r["module"].startswith(p + ".") for p in names)]


def _numpy_warning(modules: list[tuple[str, ModuleType]]) -> list[dict[str, str]]:
    for name, module in modules:
        registry = getattr(module, "__dict__", {}).get("__warningregistry__")
        if not isinstance(registry, dict):
            continue
        for key in list(registry):
            if isinstance(key, tuple) and key and isinstance(key[0], str) \
                    and key[0].startswith(_NUMPY_RELOAD):
                line = key[2] if len(key) > 2 else "?"
                return [_reload(
                    module="numpy", how="numpy-reload-warning",
                    detail=f"NumPy warned: {key[0]!r} (recorded in {name}'s warning "
                           f"registry, line {line})",
                )]
    return []


def _duplicate_files(modules: list[tuple[str, ModuleType]]) -> list[dict[str, str]]:
    # Python source only: one compiled file legitimately backs several module objects
    # (pybind11 submodules such as torch._C._autograd carry their parent's __file__).
    # Keyed by the directory's inode and the file name, which also catches a file reached
    # through a symlinked directory, and costs one stat per directory (torch imports 5000
    # modules from a few hundred) where realpath costs one per path component.
    by_file: dict[tuple[int, int, str], list[str]] = {}
    paths: dict[tuple[int, int, str], str] = {}
    directories: dict[str, tuple[int, int] | None] = {}
    for name, module in modules:
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        directory, _, filename = path.rpartition(os.sep)
        if directory in directories:
            inode = directories[directory]
        else:
            try:
                st = os.stat(directory or os.curdir)
                inode = (st.st_dev, st.st_ino)
            except OSError:
                inode = None
            directories[directory] = inode
        if inode is None:
            continue
        key = (*inode, filename)
        by_file.setdefault(key, []).append(name)
        paths.setdefault(key, path)
    found = []
    for key, names in by_file.items():
        if len(names) < 2:
            continue
        path = os.path.realpath(paths[key])
        if not _is_numerical(path_package(path) or names[0]) \
                and not any(_is_numerical(n) for n in names):
            continue
        # Aliases inside one package are deliberate (TensorFlow exposes tensorflow._api.v2.x
        # as tensorflow.x); the same file under two top-level names is a double import.
        roots = {n.partition(".")[0] for n in names}
        if len(roots) > 1 and len({id(sys.modules.get(n)) for n in names}) > 1:
            found.append(_reload(
                module=names[0], how="duplicate-file",
                detail=f"{path} is imported as {' and '.join(sorted(names))}: two module "
                       "objects, two copies of its state",
            ))
    return found


def path_package(path: str) -> str:
    """The top-level package directory name of a site-packages file, e.g. "numpy"."""
    parts = os.path.realpath(path).split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            index = len(parts) - 1 - parts[::-1].index(marker)
            if index + 1 < len(parts):
                return parts[index + 1].removesuffix(".py")
    return ""


def _stale_references(modules: list[tuple[str, ModuleType]]) -> list[dict[str, str]]:
    current = {name: module for name, module in modules}
    # The module objects sys.modules holds under their own name: most references are to
    # these, and skipping them by identity keeps this walk cheap (torch: 4000 references).
    canonical = {id(module) for name, module in modules
                 if module.__dict__.get("__name__") == name}
    stale: dict[str, list[tuple[str, str]]] = {}  # root package -> [(module, holder)]
    for holder, module in modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for value in list(namespace.values()):
            if type(value) is not ModuleType or id(value) in canonical:
                continue
            name = getattr(value, "__name__", None)
            if not isinstance(name, str) or not _is_numerical(name):
                continue
            live = current.get(name)
            # Both plain modules from the same file: a second import, not one of the
            # module-subclass wrappers packages install in sys.modules on purpose.
            if live is None or live is value or type(live) is not ModuleType \
                    or getattr(live, "__file__", None) != getattr(value, "__file__", None):
                continue
            pairs = stale.setdefault(name.partition(".")[0], [])
            if all(seen != name for seen, _ in pairs):
                pairs.append((name, holder))
    found = []
    for root, pairs in sorted(stale.items()):
        name, holder = min(pairs)
        more = f" ({len(pairs)} modules of {root} are affected)" if len(pairs) > 1 else ""
        found.append(_reload(
            module=name, how="stale-reference",
            detail=f"{holder} still uses an older {name} module object than "
                   f"sys.modules[{name!r}]: it was removed from sys.modules and imported "
                   f"again{more}",
        ))
    return found
