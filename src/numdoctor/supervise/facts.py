"""A snapshot of the program's process, taken from the outside while it runs.

Everything here is read through /proc: the mapped libraries (and which pip package shipped
each), which thread pools have started (threads whose stacks point into a pool's code), the
environment the process started with, its cgroup and CPU affinity, and the frameworks whose
compiled modules are mapped. Nothing runs inside the program, so taking it costs the program
nothing and cannot disturb it; the price is that facts only the process itself knows (pool
sizes, framework settings, the multiprocessing start method) are missing, and the report says
so.

The supervisor takes one a second after the program starts and again later (libraries load
as the program imports them), so a crash report carries the last picture taken before the
crash rather than nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from numdoctor.snapshot.environment import collect_environment
from numdoctor.snapshot.frameworks import KNOWN_FRAMEWORKS
from numdoctor.snapshot.libraries import loaded_libraries, mkl_threading_layers, read_maps
from numdoctor.snapshot.model import FrameworkInfo, LoadedLibrary, ProcessInfo, Snapshot
from numdoctor.snapshot.ownership import owning_distribution
from numdoctor.snapshot.system import collect_system, effective_cpus, read_cgroup
from numdoctor.snapshot.threads import attribute_threads, thread_ids


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


def _frameworks(paths: list[str]) -> list[FrameworkInfo]:
    found: dict[str, FrameworkInfo] = {}
    for path in paths:
        for marker in ("/site-packages/", "/dist-packages/"):
            if marker not in path:
                continue
            site, _, rest = path.partition(marker)
            top = rest.split("/", 1)[0]
            if top in KNOWN_FRAMEWORKS and top not in found:
                info = FrameworkInfo(name=top, path=f"{site}{marker}{top}")
                owner = owning_distribution(path)
                if owner:
                    info.distribution, info.version = owner
                found[top] = info
    return [found[name] for name in KNOWN_FRAMEWORKS if name in found]


def collect_outside(pid: int, info: dict[str, Any] | None = None,
                    started: float | None = None) -> Snapshot:
    """Facts about process `pid` (one of our descendants), read without entering it."""
    snapshot = Snapshot(collected_by="numdoctor run (from outside the process)",
                        created=time.time())
    system = collect_system()
    system.cgroup = read_cgroup(Path(f"/proc/{pid}"))
    try:
        system.affinity_count = len(os.sched_getaffinity(pid))
    except OSError:
        pass
    system.effective_cpus = effective_cpus(system.cpu_count, system.affinity_count,
                                           system.cgroup.cpu_quota)
    if info:
        system.python_version = str(info.get("version", ""))
        system.python_executable = str(info.get("executable", ""))
    else:
        system.python_version = system.python_executable = system.python_implementation = ""
    snapshot.system = system
    snapshot.environment = collect_environment(_without_numdoctor(_environ(pid)))
    snapshot.process = ProcessInfo(pid=pid, threads_total=len(thread_ids(pid)) or None)
    try:
        maps = read_maps(pid)
    except OSError as exc:
        snapshot.notes.append(f"could not read /proc/{pid}/maps ({exc.strerror}); "
                              "libraries unknown")
        return snapshot
    mapped = loaded_libraries(maps)
    layers = mkl_threading_layers(maps)
    for lib in mapped:
        described = LoadedLibrary(path=lib.path, family=lib.family, vendor=lib.vendor)
        owner = owning_distribution(lib.path)
        if owner:
            described.distribution, described.distribution_version = owner
        if lib.vendor == "mkl" and layers:
            described.detail["threading_libraries"] = layers
        snapshot.libraries.append(described)
    pools = {lib.path: lib.text_ranges for lib in mapped if lib.family in ("openmp", "blas")}
    if pools:
        # The main thread calls into the pools; it is not one of their workers.
        counts, _examined, unreadable = attribute_threads(pools, maps, pid=pid, skip_tids={pid})
        for lib in snapshot.libraries:
            if lib.path in counts:
                lib.active_threads = counts[lib.path]
        if unreadable:
            snapshot.notes.append(f"{len(unreadable)} thread(s) were busy or unreadable; pool "
                                  "activity is a lower bound")
    files = sorted({m.path for m in maps if m.path.startswith("/")})
    snapshot.frameworks = _frameworks(files)
    age = f" {time.monotonic() - started:.1f} s after the program started" if started else ""
    snapshot.notes.append(
        f"taken from outside process {pid}{age}: thread-pool sizes, framework settings and "
        "the multiprocessing start method are not known from there")
    return snapshot


def mapped_files(pid: int) -> list[str]:
    """Every file mapped into `pid`, for resolving library names the kernel log prints."""
    try:
        return sorted({m.path for m in read_maps(pid) if m.path.startswith("/")})
    except OSError:
        return []
