"""Facts for the NumPy-warning family: ABI of compiled files, reloads, shadowed copies,
requirement conflicts and BLAS/LAPACK symbol clashes.

`collect_binary()` is called by `collect()`. By default it reads only the compiled files
already mapped into the process (fast: what is loaded is what can break now); with
`scan_abi=True` it reads every compiled file under the sys.path directories that mentions
numpy. `confirm_abi=True` imports each suspicious module in a fresh interpreter and records
NumPy's own message. Nothing here imports or calls into the libraries it inspects.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator

from numdoctor.snapshot import abi
from numdoctor.snapshot.libraries import MapEntry, read_maps
from numdoctor.snapshot.model import BinaryFacts, ExtensionModule, NumpyBuild
from numdoctor.snapshot.ownership import owning_distribution
from numdoctor.snapshot.reloads import find_reloads, find_shadowed
from numdoctor.snapshot.requirements import (
    cached_conflicts,
    find_conflicts,
    installed_distributions,
    requirement_on,
)
from numdoctor.snapshot.symbols import find_symbol_clashes, mapped_objects

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "tests", "test"})


def collect_binary(*, scan_abi: bool = False, confirm_abi: bool = False,
                   maps: list[MapEntry] | None = None,
                   notes: list[str] | None = None) -> BinaryFacts:
    notes = notes if notes is not None else []
    if maps is None:
        try:
            maps = read_maps()
        except OSError:
            maps = []
    facts = BinaryFacts(scan="environment" if scan_abi else "loaded")
    installed: dict = {}

    def step(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # one failing collector must not cost the others
            notes.append(f"{what} failed: {type(exc).__name__}: {exc}")

    def requirements() -> None:
        if scan_abi:  # the whole-environment scan reads everything afresh
            installed.update(installed_distributions())
            facts.distributions, facts.conflicts = find_conflicts(installed)
        else:
            found, facts.distributions, facts.conflicts = cached_conflicts()
            installed.update(found)

    mapped = {e.path for e in maps if e.path.startswith("/") and not e.path.endswith(" (deleted)")}

    def symbols() -> None:
        objects = mapped_objects(maps)
        facts.symbols_checked, facts.symbol_clashes = find_symbol_clashes(objects)

    step("reading installed metadata", requirements)
    step("the NumPy build lookup", lambda: setattr(facts, "numpy", abi.numpy_build()))
    step("the extension scan", lambda: _scan(facts, mapped, scan_abi, installed))
    if confirm_abi and facts.extensions:
        step("the runtime import check",
             lambda: abi.confirm(facts.extensions, _sys_path()))
    step("reload detection", lambda: facts.reloads.extend(find_reloads()))
    step("the sys.path shadowing check", lambda: facts.shadowed.extend(find_shadowed(maps)))
    # SYM001 needs RTLD_GLOBAL in effect; reading symbol tables otherwise is --scan-abi work.
    if scan_abi or sys.getdlopenflags() & os.RTLD_GLOBAL:
        step("the symbol lookup", symbols)
    return facts


def _sys_path() -> list[str]:
    return [os.path.realpath(p or os.getcwd()) for p in sys.path]


def _scan(facts: BinaryFacts, mapped: set[str], whole_environment: bool,
          installed: dict) -> None:
    started = time.perf_counter()
    sys_path = _sys_path()
    files = list(_environment_files(sys_path)) if whole_environment else \
        _loaded_files(mapped, sys_path)
    for path in files:
        if _top_component(path, sys_path) in ("numpy", "numpy.libs"):
            continue  # every NumPy copy's own modules match the NumPy they ship with
        facts.scanned_files += 1
        markers = abi.read_markers(path)
        if markers is None or not (markers.headers or markers.target_api):
            continue
        facts.numpy_users += 1
        if not _may_break(markers, facts.numpy):
            continue
        ext = abi.describe_extension(path, markers, sys_path)
        ext.loaded = path in mapped
        _add_owner(ext, installed)
        facts.extensions.append(ext)
    facts.scan_seconds = round(time.perf_counter() - started, 3)


def _top_component(path: str, sys_path: list[str]) -> str:
    for entry in sorted(sys_path, key=len, reverse=True):
        prefix = entry.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix):].split(os.sep, 1)[0]
    return ""


def _may_break(markers: abi.Markers, numpy: NumpyBuild | None) -> bool:
    major = numpy.version.split(".", 1)[0] if numpy and numpy.version else ""
    if markers.headers == "1.x" and major != "1":
        return True
    if markers.headers == "2.x" and major == "1" and not markers.target_api:
        return True  # NumPy-2 headers without a stated target: cannot tell, keep it
    target = abi.API_VERSIONS.get(markers.target_api)
    return bool(target and numpy and numpy.api_version and target > numpy.api_version)


def _add_owner(ext: ExtensionModule, installed: dict) -> None:
    from packaging.utils import canonicalize_name

    owner = owning_distribution(ext.path)
    if owner:
        ext.distribution, ext.distribution_version = owner
        ext.requires_numpy = requirement_on(installed.get(canonicalize_name(owner[0])),
                                            "numpy")


def _is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _loaded_files(mapped: set[str], sys_path: list[str]) -> list[str]:
    """Compiled files under a sys.path directory that are mapped or imported right now."""
    roots = tuple(p.rstrip(os.sep) + os.sep for p in sys_path if os.path.isdir(p))
    found = {p for p in mapped if _is_shared_object(os.path.basename(p)) and p.startswith(roots)}
    if mapped:
        return sorted(found)
    # Imported extension modules, for a platform or process without /proc maps.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and _is_shared_object(os.path.basename(path)):
            found.add(os.path.realpath(path))
    return sorted(found)


def _environment_files(sys_path: list[str]) -> Iterator[str]:
    """Every shared object under the sys.path directories, the standard library excepted."""
    paths = sysconfig.get_paths()
    stdlib = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if k in paths}
    seen: set[str] = set()
    for root in dict.fromkeys(sys_path):
        if root in stdlib or not os.path.isdir(root) or root == os.path.realpath(os.getcwd()):
            continue
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS and not d.startswith(".")
                          and os.path.join(directory, d) not in stdlib]
            for name in names:
                if not _is_shared_object(name):
                    continue
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    continue
                real = os.path.realpath(path)
                if real not in seen:
                    seen.add(real)
                    yield real
