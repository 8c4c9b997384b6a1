"""A snapshot of the program's process, taken from the outside while it runs.

Everything here is read through /proc: the mapped libraries (and which pip package shipped
each), which thread pools have started (threads whose stacks point into a pool's code), the
environment the process started with, its cgroup and CPU affinity, and the frameworks whose
compiled modules are mapped. Nothing runs inside the program, so taking it costs the program
nothing and cannot disturb it; the price is that facts only the process itself knows (pool
sizes, framework settings, the multiprocessing start method) are missing, and the report says
so.

It comes in two steps so that a program that keeps every CPU busy pays almost nothing for it:
`capture()` reads the few facts that exist only while the process lives (its maps, its
environment, its cgroup, which pools run) — a few milliseconds; `build()` turns the latest
capture into a `Snapshot` (pip ownership, system facts, frameworks) only when a report is
actually written, possibly after the process is gone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numdoctor.core.procfs import MapEntry, read_maps, thread_ids
from numdoctor.snapshot.libraries import loaded_libraries
from numdoctor.snapshot.threads import attribute_threads


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def _without_numdoctor(env: dict[str, str]) -> dict[str, str]:
    """The environment as the user set it: without numdoctor's own PYTHONPATH entry."""
    inject = env.get("NUMDOCTOR_INJECT_DIR")
    if inject and "PYTHONPATH" in env:
        rest = [p for p in env["PYTHONPATH"].split(os.pathsep) if p != inject]
        if rest:
            env["PYTHONPATH"] = os.pathsep.join(rest)
        else:
            del env["PYTHONPATH"]
    return {k: v for k, v in env.items() if not k.startswith("NUMDOCTOR_")}


def _frameworks(paths: list[str]) -> list:
    from numdoctor.snapshot.frameworks import KNOWN_FRAMEWORKS
    from numdoctor.snapshot.model import FrameworkInfo
    from numdoctor.snapshot.ownership import owning_package

    found: dict[str, FrameworkInfo] = {}
    for path in paths:
        for marker in ("/site-packages/", "/dist-packages/"):
            if marker not in path:
                continue
            site, _, rest = path.partition(marker)
            top = rest.split("/", 1)[0]
            if top in KNOWN_FRAMEWORKS and top not in found:
                info = FrameworkInfo(name=top, path=f"{site}{marker}{top}")
                owner = owning_package(path)
                if owner:
                    info.distribution, info.version = owner
                found[top] = info
    return [found[name] for name in KNOWN_FRAMEWORKS if name in found]


@dataclass
class Capture:
    """What can only be read while process `pid` lives."""

    pid: int
    taken: float  # time.monotonic()
    info: dict[str, Any] | None = None  # its py-<pid>.info, when it is an armed interpreter
    maps: list[MapEntry] = field(default_factory=list)
    maps_error: str = ""
    environ: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    affinity: int | None = None
    cgroup: Any = None  # numdoctor.snapshot.model.CgroupInfo
    active: dict[str, int] = field(default_factory=dict)  # pool library -> running threads
    unreadable: int = 0


def capture(pid: int, info: dict[str, Any] | None = None) -> Capture:
    """The live facts of `pid` (one of our descendants): cheap, no pip lookups."""
    from numdoctor.snapshot.system import read_cgroup

    taken = Capture(pid=pid, taken=time.monotonic(), info=info,
                    environ=_without_numdoctor(_environ(pid)),
                    threads=len(thread_ids(pid)) or None,
                    cgroup=read_cgroup(Path(f"/proc/{pid}")))
    try:
        taken.affinity = len(os.sched_getaffinity(pid))
    except OSError:
        pass
    try:
        taken.maps = read_maps(pid)
    except OSError as exc:
        taken.maps_error = exc.strerror or str(exc)
        return taken
    pools = {lib.path: lib.text_ranges for lib in loaded_libraries(taken.maps)
             if lib.family in ("openmp", "blas")}
    if pools:
        # The main thread calls into the pools; it is not one of their workers.
        counts, _examined, unreadable = attribute_threads(pools, taken.maps, pid=pid,
                                                          skip_tids={pid})
        taken.active, taken.unreadable = counts, len(unreadable)
    return taken


def build(taken: Capture, started: float | None = None):
    """The `Snapshot` of a capture (the process may be gone by now)."""
    from numdoctor.snapshot.environment import collect_environment
    from numdoctor.snapshot.implementations import resolve_interfaces
    from numdoctor.snapshot.libraries import mkl_threading_layers
    from numdoctor.snapshot.model import LoadedLibrary, ProcessInfo, Snapshot
    from numdoctor.snapshot.ownership import owning_package
    from numdoctor.snapshot.system import collect_system, effective_cpus

    pid, info = taken.pid, taken.info
    snapshot = Snapshot(collected_by="numdoctor run (from outside the process)",
                        created=time.time() - (time.monotonic() - taken.taken))
    system = collect_system()
    if taken.cgroup is not None:
        system.cgroup = taken.cgroup
    system.affinity_count = taken.affinity or system.affinity_count
    system.effective_cpus = effective_cpus(system.cpu_count, system.affinity_count,
                                           system.cgroup.cpu_quota)
    if info:
        system.python_version = str(info.get("version", ""))
        system.python_executable = str(info.get("executable", ""))
    else:
        system.python_version = system.python_executable = system.python_implementation = ""
    snapshot.system = system
    snapshot.environment = collect_environment(taken.environ)
    snapshot.process = ProcessInfo(pid=pid, threads_total=taken.threads)
    if taken.maps_error:
        snapshot.notes.append(f"could not read /proc/{pid}/maps ({taken.maps_error}); "
                              "libraries unknown")
        return snapshot
    layers = mkl_threading_layers(taken.maps)
    for lib in loaded_libraries(taken.maps):
        described = LoadedLibrary(path=lib.path, family=lib.family, vendor=lib.vendor)
        owner = owning_package(lib.path)
        if owner:
            described.distribution, described.distribution_version = owner
        if lib.vendor == "mkl" and layers:
            described.detail["threading_libraries"] = layers
        if lib.path in taken.active:
            described.active_threads = taken.active[lib.path]
        snapshot.libraries.append(described)
    # Debian's libblas.so.3 in front of OpenBLAS is one implementation, not two (as `check`).
    resolve_interfaces(snapshot.libraries)
    if taken.unreadable:
        snapshot.notes.append(f"{taken.unreadable} thread(s) were busy or unreadable; pool "
                              "activity is a lower bound")
    files = sorted({m.path for m in taken.maps if m.path.startswith("/")})
    snapshot.frameworks = _frameworks(files)
    age = (f" {taken.taken - started:.1f} s after the program started"
           if started is not None else "")
    snapshot.notes.append(
        f"taken from outside process {pid}{age}: thread-pool sizes, framework settings and "
        "the multiprocessing start method are not known from there")
    return snapshot


def collect_outside(pid: int, info: dict[str, Any] | None = None,
                    started: float | None = None):
    """Facts about process `pid` (one of our descendants), read without entering it."""
    return build(capture(pid, info), started)


def mapped_files(pid: int) -> list[str]:
    """Every file mapped into `pid`, for resolving library names the kernel log prints."""
    try:
        return sorted({m.path for m in read_maps(pid) if m.path.startswith("/")})
    except OSError:
        return []
