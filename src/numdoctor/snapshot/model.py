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
    """The cgroup limits that bind the process (CPU quota, memory limit)."""

    version: int | None = None  # 1, 2, or None when not in a cgroup hierarchy we can read
    path: str = ""  # the process's cgroup path as listed in /proc/<pid>/cgroup
    cpu_quota: float | None = None  # CPUs allowed by the tightest quota on the path (None = none)
    cpu_quota_source: str = ""  # the file that set it
    memory_limit: int | None = None  # bytes, tightest limit on the path (None = unlimited)
    memory_limit_source: str = ""


@dataclass
class SystemInfo:
    """The machine: OS, CPU, cgroup limits, memory."""

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
    # e.g. "gnu", "intel", "llvm", "openblas", "mkl", "blis", "cublas", "libstdc++"; for an
    # interface library, the vendor of the implementation behind it
    vendor: str
    # The package that installed the file: a pip distribution ("numpy"), or "conda:<name>",
    # "deb:<name>", "rpm:<name>" ("" = no package manager knows it)
    distribution: str = ""
    distribution_version: str = ""
    version: str = ""  # the library's own version when it tells one
    num_threads: int | None = None  # current pool size (threadpoolctl)
    threading_layer: str = ""  # "pthreads", "openmp", "intel", "gnu", "tbb", "sequential"...
    architecture: str = ""  # OpenBLAS/BLIS core type
    detail: dict[str, Any] = field(default_factory=dict)  # vendor-specific extras
    # Threads whose live stack holds a return address into this library: a pool that has
    # started. None = not measured.
    active_threads: int | None = None
    soname: str = ""  # DT_SONAME, the name other libraries ask for
    # Real path of the implementation that runs the calls made through this library, when it
    # is only an interface to it (Debian's libblas.so.3 in front of OpenBLAS, FlexiBLAS and
    # its backend); "" when this library is an implementation with its own code and pool.
    implementation: str = ""
    # update-alternatives links that select this file, e.g. "libblas.so.3-x86_64-linux-gnu".
    alternatives: list[str] = field(default_factory=list)


@dataclass
class ThreadPool:
    """A pool of threads a framework runs its work on, as the framework sizes it."""

    name: str  # "intra-op", "inter-op", "XLA CPU", ...
    size: int | None = None  # threads it runs at most (None = unknown)
    configured: bool = False  # set by the program or an environment variable, not a default
    source: str = ""  # what decided the size: "TF_NUM_INTRAOP_THREADS=4", "default: ..."
    knob: str = ""  # how to change it, e.g. "torch.set_num_interop_threads(n)"
    started: bool | None = None  # its threads exist now (None = cannot be known)
    # Real path of the native library whose pool this is (torch's intra-op pool is its
    # OpenMP runtime's pool): the same threads, counted once.
    runs_on: str = ""


@dataclass
class FrameworkInfo:
    """One imported numerical framework: version, where from, its build and thread settings."""

    name: str  # import name: numpy, scipy, torch...
    version: str = ""
    path: str = ""
    distribution: str = ""  # as LoadedLibrary.distribution
    details: dict[str, Any] = field(default_factory=dict)
    # Real paths of the BLAS implementations its loaded extension modules are linked to
    # (through interface libraries), i.e. the BLAS that really serves its calls.
    blas_libraries: list[str] = field(default_factory=list)
    pools: list[ThreadPool] = field(default_factory=list)


@dataclass
class CollectionError:
    """A step of collecting that failed unexpectedly: a numdoctor bug, reported as such."""

    step: str  # what was being collected, e.g. "owner of each loaded library"
    error: str  # the exception in one line, e.g. "IndexError: 2"
    where: str = ""  # innermost frame, e.g. "ownership.py:129 in _owner"


@dataclass
class ImportAttempt:
    """What happened when a collector imported a module on request."""

    module: str
    status: str  # "ok", "missing", "error", "hang", "crash", "skipped"
    seconds: float = 0.0
    detail: str = ""  # exception text, signal name, last lines of stderr...
    traceback: str = ""
    environment_set: list[str] = field(default_factory=list)  # variables the import set


@dataclass
class ProcessInfo:
    """The checked process: start method, threads, how it loads libraries."""

    pid: int = 0
    start_method: str = ""  # the multiprocessing start method a Process() would use now
    start_method_explicit: bool = False  # set by the program, not the platform default
    threads_total: int | None = None  # OS threads in the process
    python_threads: int | None = None  # of which Python knows
    rtld_global: bool = False  # sys.getdlopenflags() contains RTLD_GLOBAL
    threadpoolctl_preloaded: bool = False  # threadpoolctl was imported before we looked
    kmp_duplicate_lib_ok_original: str | None = None  # value before threadpoolctl could touch it
    # /proc/<pid>/maps could be read: without it, which libraries are loaded is unknown
    memory_map_read: bool = True


@dataclass
class Snapshot:
    """Everything `check` collects about one process: the facts the rules read."""

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
    # Collection steps that raised; the rest of the snapshot is complete.
    collection_errors: list[CollectionError] = field(default_factory=list)
    # Which modules the collector was asked to import: "default" (the known frameworks that
    # are installed), "explicit" (--import), "" (none: the calling process as it is).
    import_set: str = ""
    # Binary compatibility, reloads, shadowing, requirement and symbol conflicts. The lambda
    # defers the name lookup: BinaryFacts is defined in its own section at the end of this file.
    binary: BinaryFacts = field(default_factory=lambda: BinaryFacts())
    schema_version: int = SNAPSHOT_SCHEMA_VERSION

    # -- conveniences for rules (pure functions of the facts) --------------------------------
    def libs(self, family: str | None = None, vendor: str | None = None) -> list[LoadedLibrary]:
        return [
            lib
            for lib in self.libraries
            if (family is None or lib.family == family) and (vendor is None or lib.vendor == vendor)
        ]

    def implementations(self, family: str | None = None,
                        vendor: str | None = None) -> list[LoadedLibrary]:
        """The libraries that run code with their own pool: interface libraries left out
        (they are counted with the implementation behind them)."""
        return [lib for lib in self.libs(family, vendor) if not lib.implementation]

    def interfaces_of(self, implementation: LoadedLibrary) -> list[LoadedLibrary]:
        """The interface libraries whose calls `implementation` runs."""
        return [lib for lib in self.libraries if lib.implementation == implementation.path]

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
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _convert(arg, value)
    return value


# -- binary compatibility, reloads, shadowing, version and symbol conflicts ------------------
# Collected by numdoctor.snapshot.binary; judged by numdoctor.rules.binary.


@dataclass
class NumpyBuild:
    """The NumPy that compiled extensions are judged against."""

    version: str = ""
    path: str = ""  # the package directory
    loaded: bool = False  # imported in the process (False: the copy an import would pick)
    api_version: int | None = None  # C-API feature version (NPY_API_VERSION), e.g. 0x15
    abi_version: int | None = None  # NPY_ABI_VERSION: 0x01000009 (1.x) or 0x02000000 (2.x)


@dataclass
class ExtensionModule:
    """A compiled file that uses NumPy's C-API, as its bytes and a test import tell."""

    path: str  # real path
    module: str = ""  # import name; "" for a shared library that is not a module
    distribution: str = ""
    distribution_version: str = ""
    loaded: bool = False  # mapped into the inspected process
    numpy_headers: str = ""  # "1.x" or "2.x": the NumPy headers it was compiled with
    binding: str = ""  # "c-api" (numpy's import_array), "pybind11" or "unknown"
    target_api: str = ""  # oldest NumPy whose C-API it needs, e.g. "1.23" ("" = not in binary)
    target_api_version: int | None = None  # the same as NPY_FEATURE_VERSION, e.g. 0x10
    markers: list[str] = field(default_factory=list)  # the strings found that tell the above
    requires_numpy: str = ""  # its distribution's own requirement, e.g. "numpy>=1.16"
    # Runtime confirmation: importing `import_name` in a fresh interpreter.
    import_name: str = ""
    runtime_status: str = ""  # "" (not tried), "incompatible", "ok", "error", "timeout"
    runtime_message: str = ""  # NumPy's own message, or the error's last line


@dataclass
class ModuleReload:
    """Evidence that a module was executed more than once in this process."""

    module: str
    how: str  # "reload", "numpy-reload-warning", "duplicate-file", "stale-reference"
    detail: str = ""


@dataclass
class PackageCopy:
    """One copy of a package on sys.path (two copies shadow each other)."""

    path: str  # the package directory
    version: str = ""
    distribution: str = ""
    sys_path_index: int = -1  # position of its sys.path entry (lower wins)
    native_mapped: bool = False  # some compiled file of this copy is mapped in the process


@dataclass
class ShadowedPackage:
    """One import name that resolves to several directories along sys.path."""

    name: str
    copies: list[PackageCopy] = field(default_factory=list)  # in sys.path order
    imported: str = ""  # directory of the copy in sys.modules ("" = not imported)


@dataclass
class RequirementConflict:
    """An installed distribution whose declared requirement is not met."""

    distribution: str
    version: str
    requirement: str  # as declared, e.g. "numpy<2,>=1.22"
    dependency: str
    installed: str = ""  # installed version of the dependency; "" when it is missing


@dataclass
class KnownIncompatibility:
    """Installed versions that numdoctor's table of public sources says do not work together
    (numdoctor/data/known_incompatibilities.json), although their metadata allows them."""

    distribution: str  # canonical name
    version: str
    other: str  # canonical name, e.g. "numpy"
    other_version: str
    affected: str  # the table's specifiers, e.g. "<1.13.0" and ">=2"
    other_versions: str
    problem: str
    fixed_in: str  # first release of `distribution` that works with those versions
    source: str  # public source (release notes, changelog, issue)


@dataclass
class SymbolExporter:
    """A loaded library that exports a symbol another one exports too."""

    path: str
    distribution: str = ""
    distribution_version: str = ""


@dataclass
class SymbolClash:
    """Loaded libraries that all export the same BLAS/LAPACK symbols."""

    symbols: list[str] = field(default_factory=list)
    libraries: list[SymbolExporter] = field(default_factory=list)


@dataclass
class BinaryFacts:
    """What the compiled files say: the NumPy they were built for, their symbols."""

    numpy: NumpyBuild | None = None  # None: NumPy is neither loaded nor installed
    scan: str = "loaded"  # "loaded" (mapped files only) or "environment" (--scan-abi)
    scanned_files: int = 0  # compiled files whose bytes were read
    numpy_users: int = 0  # of which use NumPy's C-API
    scan_seconds: float = 0.0
    # Compiled files that may not work with `numpy`: built with other-major headers, needing
    # a newer C-API, or whose runtime import failed. Plainly compatible ones are only counted.
    extensions: list[ExtensionModule] = field(default_factory=list)
    reloads: list[ModuleReload] = field(default_factory=list)
    shadowed: list[ShadowedPackage] = field(default_factory=list)
    # Installed numerical distributions (canonical name -> version) and their dependencies.
    distributions: dict[str, str] = field(default_factory=dict)
    conflicts: list[RequirementConflict] = field(default_factory=list)
    known_incompatible: list[KnownIncompatibility] = field(default_factory=list)
    symbols_checked: int = 0  # loaded libraries whose exported symbols were looked up
    symbol_clashes: list[SymbolClash] = field(default_factory=list)
