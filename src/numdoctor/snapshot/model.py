"""The Snapshot: facts about one process, and nothing else.

No judgement lives here (that is the rules' job). Every class round-trips through plain JSON
dicts; `SNAPSHOT_SCHEMA_VERSION` changes whenever a field changes meaning or disappears.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SNAPSHOT_SCHEMA_VERSION = 1


@dataclass
class CgroupInfo:
    version: int | None = None  # 1, 2, or None when not in a cgroup hierarchy we can read
    path: str = ""  # the process's cgroup path as listed in /proc/<pid>/cgroup
    cpu_quota: float | None = None  # CPUs allowed by the tightest quota on the path (None = none)
    cpu_quota_source: str = ""  # the file that set it
    memory_limit: int | None = None  # bytes, tightest limit on the path (None = unlimited)
    memory_limit_source: str = ""


@dataclass
class SystemInfo:
    os: str = ""
    kernel: str = ""
    machine: str = ""
    libc: str = ""
    python_version: str = ""
    python_implementation: str = ""
    python_executable: str = ""
    cpu_model: str = ""
    cpu_flags: list[str] = field(default_factory=list)  # the SIMD flags numerical code cares about
    cpu_count: int | None = None  # os.cpu_count(): what naive pools size themselves to
    affinity_count: int | None = None  # len(sched_getaffinity(0))
    cgroup: CgroupInfo = field(default_factory=CgroupInfo)
    effective_cpus: int | None = None  # min(cpu_count, affinity, ceil(cgroup quota))
    memory_total: int | None = None  # bytes of RAM on the host


@dataclass
class LoadedLibrary:
    """A shared library of interest mapped into the process."""

    path: str  # real path, symlinks resolved
    family: str  # "openmp", "blas", "cuda", "cxx"
    vendor: str  # e.g. "gnu", "intel", "llvm", "openblas", "mkl", "blis", "cublas", "libstdc++"
    distribution: str = ""  # pip distribution that ships the file ("" = not from pip)
    distribution_version: str = ""
    version: str = ""  # the library's own version when it tells one
    num_threads: int | None = None  # current pool size (threadpoolctl)
    threading_layer: str = ""  # "pthreads", "openmp", "intel", "gnu", "tbb", "sequential"...
    architecture: str = ""  # OpenBLAS/BLIS core type
    detail: dict[str, Any] = field(default_factory=dict)  # vendor-specific extras
    # Threads whose live stack holds a return address into this library: a pool that has
    # started. None = not measured.
    active_threads: int | None = None


@dataclass
class FrameworkInfo:
    name: str  # import name: numpy, scipy, torch...
    version: str = ""
    path: str = ""
    distribution: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportAttempt:
    """What happened when a collector imported a module on request."""

    module: str
    status: str  # "ok", "missing", "error", "hang", "crash", "skipped"
    seconds: float = 0.0
    detail: str = ""  # exception text, signal name, last lines of stderr...
    traceback: str = ""


@dataclass
class ProcessInfo:
    pid: int = 0
    start_method: str = ""  # the multiprocessing start method a Process() would use now
    start_method_explicit: bool = False  # set by the program, not the platform default
    threads_total: int | None = None  # OS threads in the process
    python_threads: int | None = None  # of which Python knows
    rtld_global: bool = False  # sys.getdlopenflags() contains RTLD_GLOBAL
    threadpoolctl_preloaded: bool = False  # threadpoolctl was imported before we looked
    kmp_duplicate_lib_ok_original: str | None = None  # value before threadpoolctl could touch it


@dataclass
class Snapshot:
    collected_by: str = "process"  # "process" (in-process) or "subprocess"
    created: float = 0.0  # unix time
    system: SystemInfo = field(default_factory=SystemInfo)
    libraries: list[LoadedLibrary] = field(default_factory=list)
    frameworks: list[FrameworkInfo] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    process: ProcessInfo = field(default_factory=ProcessInfo)
    imports: list[ImportAttempt] = field(default_factory=list)
    # Things the collector could not find out, and why; shown so silence is never mistaken
    # for health.
    notes: list[str] = field(default_factory=list)
    schema_version: int = SNAPSHOT_SCHEMA_VERSION

    # -- conveniences for rules (pure functions of the facts) --------------------------------
    def libs(self, family: str | None = None, vendor: str | None = None) -> list[LoadedLibrary]:
        return [
            lib
            for lib in self.libraries
            if (family is None or lib.family == family) and (vendor is None or lib.vendor == vendor)
        ]

    def framework(self, name: str) -> FrameworkInfo | None:
        return next((f for f in self.frameworks if f.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        version = data.get("schema_version")
        if version != SNAPSHOT_SCHEMA_VERSION:
            raise ValueError(
                f"snapshot schema_version {version!r} is not supported "
                f"(this numdoctor reads version {SNAPSHOT_SCHEMA_VERSION})"
            )
        return _build(cls, data)


def _build(cls: type, data: Any) -> Any:
    """Rebuild nested dataclasses from dicts, guided by the type hints."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _convert(arg, value)
    return value
