"""Collect a Snapshot of a process, without changing it.

Two halves: `live_facts()` (numdoctor.snapshot.live) reads what only the inspected process
can tell; `assemble()` adds what the file system tells about those facts (owning packages,
NumPy builds of extensions, installed requirements, the machine) and builds the Snapshot.
In-process they run one after the other (`collect()`); `numdoctor check` runs the first in
its collector child and the second in the parent, which warms its caches while the child
is still importing (`prefetch`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from numdoctor.snapshot.implementations import resolve_interfaces
from numdoctor.snapshot.live import LiveFacts, live_facts
from numdoctor.snapshot.model import (
    FrameworkInfo,
    LoadedLibrary,
    ProcessInfo,
    Snapshot,
    SystemInfo,
    ThreadPool,
)
from numdoctor.snapshot.ownership import owning_package

if TYPE_CHECKING:
    from numdoctor.snapshot.failures import Steps

_FRAMEWORK_FIELDS = {f.name for f in dataclasses.fields(FrameworkInfo)}
_POOL_FIELDS = {f.name for f in dataclasses.fields(ThreadPool)}


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
    child shares its parent's). Every step is isolated: one that raises becomes a
    `CollectionError` (reported as ND001) and the rest of the snapshot is still complete.
    """
    from numdoctor.redact import redact_environment
    from numdoctor.snapshot.binary import collect_binary
    from numdoctor.snapshot.failures import Steps
    from numdoctor.snapshot.model import CollectionError
    from numdoctor.snapshot.system import collect_system

    errors: list[dict[str, str]] = list(live.get("errors", []))
    steps = Steps(errors)
    snapshot = Snapshot(collected_by=collected_by, created=live.get("created", time.time()))
    snapshot.notes = list(live.get("notes", []))
    snapshot.process = steps.run("process facts",
                                 lambda: ProcessInfo(**live.get("process", {})), ProcessInfo())
    snapshot.environment = steps.run(
        "environment variables",
        lambda: dict(sorted(redact_environment(live.get("environment", {})).items())), {})
    snapshot.system = system if system is not None else steps.run(
        "machine facts (CPU, cgroup, memory)", collect_system, SystemInfo())
    libraries = live.get("libraries", [])
    snapshot.libraries = [steps.run("library description", partial(_describe, lib, live),
                                    LoadedLibrary(path=lib["path"], family=lib["family"],
                                                  vendor=lib["vendor"]))
                          for lib in libraries]
    for described in snapshot.libraries:
        steps.run("owner of each loaded library", partial(_add_owner, described), None)
    steps.run("thread-pool sizes (threadpoolctl)",
              lambda: _add_threadpool_info(snapshot.libraries, live.get("threadpools", [])),
              None)
    steps.run("interface libraries and the implementations behind them",
              lambda: resolve_interfaces(snapshot.libraries), None)
    mapped = live.get("mapped", [])
    snapshot.frameworks = [
        steps.run("framework description",
                  partial(_framework, raw, mapped, snapshot.libraries, steps),
                  FrameworkInfo(name=str(raw.get("name", "?"))))
        for raw in live.get("frameworks", [])
    ]
    snapshot.binary = collect_binary(live, scan_abi=scan_abi, confirm_abi=confirm_abi,
                                     errors=errors)
    snapshot.collection_errors = [CollectionError(**e) for e in errors]
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
                owning_package(spec.origin)
        return collect_system()
    except Exception:
        return None


def prefetch(paths: Iterable[str], sys_path: list[str]) -> None:
    """Read the file facts `assemble` will need about these mapped paths, into its caches.

    Called by `numdoctor check` on the paths its collector child maps while it imports.
    """
    from numdoctor.snapshot import abi
    from numdoctor.snapshot.binary import is_shared_object
    from numdoctor.snapshot.elf import linkage
    from numdoctor.snapshot.libraries import classify

    roots = tuple(p.rstrip(os.sep) + os.sep for p in sys_path)
    for path in paths:
        name = os.path.basename(path)
        if classify(path) is not None:
            owning_package(path)
            linkage(path)
        elif is_shared_object(name) and path.startswith(roots):
            abi.read_markers(path)
            linkage(path)  # which BLAS and OpenMP runtime it is linked to


def _describe(lib: dict, live: LiveFacts) -> LoadedLibrary:
    described = LoadedLibrary(path=lib["path"], family=lib["family"], vendor=lib["vendor"],
                              active_threads=live.get("active_threads", {}).get(lib["path"]))
    if lib["family"] == "cuda":
        described.version = _version_from_name(lib["path"])
    if described.vendor == "mkl" and live.get("mkl_threading_layers"):
        described.detail["threading_libraries"] = list(live["mkl_threading_layers"])
    return described


def _add_owner(lib: LoadedLibrary) -> None:
    owner = owning_package(lib.path)
    if owner:
        lib.distribution, lib.distribution_version = owner


def _framework(raw: dict, mapped: list[str], libraries: list[LoadedLibrary],
               steps: Steps) -> FrameworkInfo:
    from numdoctor.snapshot.implementations import linked_libraries

    fields = {k: v for k, v in raw.items() if k in _FRAMEWORK_FIELDS}
    pools = [ThreadPool(**{k: v for k, v in pool.items() if k in _POOL_FIELDS})
             for pool in fields.pop("pools", []) or []]
    info = FrameworkInfo(**fields, pools=pools)
    if not info.path:
        return info
    owner = steps.run("owner of each framework", lambda: owning_package(info.path), None)
    if owner:
        info.distribution = owner[0]
    package_dir = os.path.dirname(os.path.realpath(info.path))
    info.blas_libraries = steps.run(
        "the BLAS each framework is linked to",
        lambda: linked_libraries(package_dir, mapped, libraries, "blas"), [])
    for pool in info.pools:
        if pool.runs_on in ("openmp", "blas"):
            # The family the pool belongs to, resolved to the library of that family the
            # framework's own modules are linked to (see frameworks._pool).
            linked: list[str] = steps.run(
                "the runtime each framework pool runs on",
                partial(linked_libraries, package_dir, mapped, libraries, pool.runs_on), [])
            pool.runs_on = linked[0] if linked else ""
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
