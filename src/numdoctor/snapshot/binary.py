"""Facts for the NumPy-warning family: ABI of compiled files, reloads, shadowed copies,
requirement conflicts and BLAS/LAPACK symbol clashes.

`collect_binary()` is called by `assemble()` with the live facts of the inspected process
(numdoctor.snapshot.live). By default it reads only the compiled files already mapped into
that process (fast: what is loaded is what can break now); with `scan_abi=True` it reads
every compiled file under its sys.path directories that mentions numpy. `confirm_abi=True`
imports each suspicious module in a fresh interpreter and records NumPy's own message.
Nothing here imports or calls into the libraries it inspects.
"""

from __future__ import annotations

import os
import sysconfig
import time
from collections.abc import Callable, Iterator
from typing import Any

from numdoctor.snapshot import abi
from numdoctor.snapshot.model import BinaryFacts, ExtensionModule, ModuleReload, NumpyBuild
from numdoctor.snapshot.ownership import owning_distribution
from numdoctor.snapshot.requirements import (
    cached_conflicts,
    find_conflicts,
    installed_distributions,
    requirement_on,
)
from numdoctor.snapshot.shadowing import find_shadowed
from numdoctor.snapshot.symbols import find_symbol_clashes, mapped_objects

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "tests", "test"})


def collect_binary(live: dict[str, Any] | None = None, *, scan_abi: bool = False,
                   confirm_abi: bool = False,
                   errors: list[dict[str, str]] | None = None) -> BinaryFacts:
    """`live`: the inspected process's live facts (default: this process's, taken now).

    A step that raises is recorded in `errors` (as numdoctor.snapshot.failures describes
    it) and the others still run.
    """
    from numdoctor.snapshot.failures import Steps

    steps = Steps(errors)
    if live is None:
        from numdoctor.snapshot.live import live_facts

        live = live_facts(threadpools=False)
    facts = BinaryFacts(scan="environment" if scan_abi else "loaded")
    installed: dict = {}
    sys_path = [os.path.realpath(p) for p in live["sys_path"]]

    def step(what: str, action: Callable[[], None]) -> None:
        steps.run(what, action, None)

    def requirements() -> None:
        if scan_abi:  # the whole-environment scan reads everything afresh
            from numdoctor.snapshot.known_pairs import find_known_incompatible

            installed.update(installed_distributions(live["sys_path"]))
            facts.distributions, facts.conflicts = find_conflicts(installed)
            facts.known_incompatible = find_known_incompatible(facts.distributions)
        else:
            found, facts.distributions, facts.conflicts, facts.known_incompatible = \
                cached_conflicts(live["sys_path"])
            installed.update(found)

    mapped = set(live["mapped"])

    def symbols() -> None:
        objects = mapped_objects(live["mapped"])
        facts.symbols_checked, facts.symbol_clashes = find_symbol_clashes(objects)

    step("reading installed metadata", requirements)
    step("the NumPy build lookup",
         lambda: setattr(facts, "numpy", abi.numpy_build(live.get("numpy"))))
    step("the extension scan",
         lambda: _scan(facts, mapped, sys_path, scan_abi, installed,
                       live.get("extension_files", [])))
    if confirm_abi and facts.extensions:
        step("the runtime import check", lambda: abi.confirm(facts.extensions, sys_path))
    step("module reloads", lambda: facts.reloads.extend(
        ModuleReload(**r) for r in live.get("reloads", [])))
    step("the sys.path shadowing check", lambda: facts.shadowed.extend(
        find_shadowed(live["sys_path"], live["mapped"], live.get("imported_packages", {}))))
    # SYM001 needs RTLD_GLOBAL in effect; reading symbol tables otherwise is --scan-abi work.
    if scan_abi or live["process"].get("rtld_global"):
        step("the symbol lookup", symbols)
    return facts


def _scan(facts: BinaryFacts, mapped: set[str], sys_path: list[str], whole_environment: bool,
          installed: dict, imported: list[str]) -> None:
    started = time.perf_counter()
    files = list(_environment_files(sys_path)) if whole_environment else \
        _loaded_files(mapped, sys_path, imported)
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
    abi.save_markers()
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


def is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _loaded_files(mapped: set[str], sys_path: list[str], imported: list[str]) -> list[str]:
    """Compiled files under a sys.path directory that are mapped (or, without /proc maps,
    imported) in the inspected process."""
    if not mapped:
        return sorted(imported)
    roots = tuple(p.rstrip(os.sep) + os.sep for p in sys_path if os.path.isdir(p))
    return sorted(p for p in mapped if is_shared_object(os.path.basename(p))
                  and p.startswith(roots))


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
                if not is_shared_object(name):
                    continue
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    continue
                real = os.path.realpath(path)
                if real not in seen:
                    seen.add(real)
                    yield real
