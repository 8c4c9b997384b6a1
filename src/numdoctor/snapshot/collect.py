"""Collect a Snapshot of a process, without changing it.

Two halves: `live_facts()` (numdoctor.snapshot.live) reads what only the inspected process
can tell; `assemble()` adds what the file system tells about those facts (owning packages,
NumPy builds of extensions, installed requirements, the machine) and builds the Snapshot.
In-process they run one after the other (`collect()`); `numdoctor check` runs the first in
its collector child and the second in the parent, which warms its caches while the child
is still importing (`prefetch`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from numdoctor.snapshot.live import LiveFacts, live_facts
from numdoctor.snapshot.model import (
    FrameworkInfo,
    LoadedLibrary,
    ProcessInfo,
    Snapshot,
    SystemInfo,
)
from numdoctor.snapshot.ownership import owning_distribution


def collect(*, threadpools: bool = True, collected_by: str = "process", scan_abi: bool = False,
            confirm_abi: bool = False) -> Snapshot:
    """Facts about this process: system, loaded libraries, frameworks, environment.

    `scan_abi` reads every compiled file of the environment for its NumPy build (default:
    only the loaded ones); `confirm_abi` test-imports suspicious ones in a fresh interpreter.
    """
    return assemble(live_facts(threadpools=threadpools), collected_by=collected_by,
                    scan_abi=scan_abi, confirm_abi=confirm_abi)


def assemble(live: LiveFacts, *, collected_by: str = "process",
             system: SystemInfo | None = None, scan_abi: bool = False,
             confirm_abi: bool = False) -> Snapshot:
    """The Snapshot of the process that gave `live`.

    `system` may be passed when it was read beforehand on the same machine and cgroup (a
    child shares its parent's).
    """
    from numdoctor.redact import redact_environment
    from numdoctor.snapshot.binary import collect_binary
    from numdoctor.snapshot.system import collect_system

    snapshot = Snapshot(collected_by=collected_by, created=live["created"])
    snapshot.notes = list(live["notes"])
    snapshot.process = ProcessInfo(**live["process"])
    snapshot.environment = dict(sorted(redact_environment(live["environment"]).items()))
    snapshot.system = system if system is not None else collect_system()
    snapshot.libraries = [_describe(lib, live) for lib in live["libraries"]]
    _add_threadpool_info(snapshot.libraries, live["threadpools"])
    snapshot.frameworks = [_framework(f) for f in live["frameworks"]]
    snapshot.binary = collect_binary(live, scan_abi=scan_abi, confirm_abi=confirm_abi,
                                     notes=snapshot.notes)
    return snapshot


def warm_up(modules: Iterable[str]) -> SystemInfo | None:
    """Read ahead what `assemble` needs whatever the live facts say, into its caches.

    For a collector child of this process about to import `modules`: it runs on the same
    machine, in the same cgroup, with the same sys.path. Returns the machine's facts (None
    if they cannot be read; `assemble` will then try again and say why).
    """
    import importlib.util

    from numdoctor.snapshot.known import KNOWN_FRAMEWORKS
    from numdoctor.snapshot.requirements import cached_conflicts
    from numdoctor.snapshot.shadowing import package_copies
    from numdoctor.snapshot.system import collect_system

    cwd = os.getcwd()
    try:
        cached_conflicts([p or cwd for p in sys.path])
        package_copies([p or cwd for p in sys.path])
        for name in {m.partition(".")[0] for m in modules} & set(KNOWN_FRAMEWORKS):
            spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported
            if spec is not None and spec.origin:
                owning_distribution(spec.origin)
        return collect_system()
    except Exception:
        return None


def prefetch(paths: Iterable[str], sys_path: list[str]) -> None:
    """Read the file facts `assemble` will need about these mapped paths, into its caches.

    Called by `numdoctor check` on the paths its collector child maps while it imports.
    """
    from numdoctor.snapshot import abi
    from numdoctor.snapshot.binary import is_shared_object
    from numdoctor.snapshot.libraries import classify

    roots = tuple(p.rstrip(os.sep) + os.sep for p in sys_path)
    for path in paths:
        name = os.path.basename(path)
        if classify(path) is not None:
            owning_distribution(path)
        elif is_shared_object(name) and path.startswith(roots):
            abi.read_markers(path)


def _describe(lib: dict, live: LiveFacts) -> LoadedLibrary:
    described = LoadedLibrary(path=lib["path"], family=lib["family"], vendor=lib["vendor"],
                              active_threads=live["active_threads"].get(lib["path"]))
    owner = owning_distribution(lib["path"])
    if owner:
        described.distribution, described.distribution_version = owner
    if lib["family"] == "cuda":
        described.version = _version_from_name(lib["path"])
    if described.vendor == "mkl" and live["mkl_threading_layers"]:
        described.detail["threading_libraries"] = list(live["mkl_threading_layers"])
    return described


def _framework(raw: dict) -> FrameworkInfo:
    info = FrameworkInfo(**raw)
    if info.path:
        owner = owning_distribution(info.path)
        if owner:
            info.distribution = owner[0]
    return info


def _version_from_name(path: str) -> str:
    name = os.path.basename(path)
    _, _, version = name.partition(".so.")
    return version


def _add_threadpool_info(libraries: list[LoadedLibrary], infos: list[dict]) -> None:
    by_path = {lib.path: lib for lib in libraries}
    for info in infos:
        lib = by_path.get(os.path.realpath(info.get("filepath", "")))
        if lib is None:
            continue
        lib.num_threads = info.get("num_threads")
        lib.version = lib.version or (info.get("version") or "")
        lib.threading_layer = info.get("threading_layer") or ""
        lib.architecture = info.get("architecture") or ""
        lib.detail["internal_api"] = info.get("internal_api", "")
