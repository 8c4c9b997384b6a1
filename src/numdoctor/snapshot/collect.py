"""Collect a Snapshot of the current process, without changing it."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

from numdoctor.snapshot.binary import collect_binary
from numdoctor.snapshot.environment import collect_environment
from numdoctor.snapshot.frameworks import collect_frameworks
from numdoctor.snapshot.libraries import (
    MappedLibrary,
    loaded_libraries,
    mkl_threading_layers,
    read_maps,
)
from numdoctor.snapshot.model import LoadedLibrary, ProcessInfo, Snapshot
from numdoctor.snapshot.ownership import owning_distribution
from numdoctor.snapshot.system import collect_system
from numdoctor.snapshot.threads import attribute_threads, python_thread_ids, thread_ids

_KMP = "KMP_DUPLICATE_LIB_OK"


def collect(*, threadpools: bool = True, collected_by: str = "process", scan_abi: bool = False,
            confirm_abi: bool = False) -> Snapshot:
    """Facts about this process: system, loaded libraries, frameworks, environment.

    `scan_abi` reads every compiled file of the environment for its NumPy build (default:
    only the loaded ones); `confirm_abi` test-imports suspicious ones in a fresh interpreter.
    """
    snapshot = Snapshot(collected_by=collected_by, created=time.time())
    kmp_before = os.environ.get(_KMP)
    snapshot.process = _process_info(kmp_before)
    snapshot.environment = collect_environment()
    snapshot.system = collect_system()

    try:
        maps = read_maps()
    except OSError as exc:
        maps = []
        snapshot.notes.append(f"could not read /proc/self/maps ({exc}); libraries unknown")
    mapped = loaded_libraries(maps)
    snapshot.libraries = [_describe(lib) for lib in mapped]
    mkl_layers = mkl_threading_layers(maps)
    for lib in snapshot.libraries:
        if lib.vendor == "mkl" and mkl_layers:
            lib.detail["threading_libraries"] = mkl_layers

    if threadpools:
        _add_threadpool_info(snapshot, kmp_before)
    pools = {lib.path: lib.text_ranges for lib in mapped if lib.family in ("openmp", "blas")}
    if pools and maps:
        counts, _examined, unreadable = attribute_threads(
            pools, maps, skip_tids=python_thread_ids()
        )
        for lib in snapshot.libraries:
            if lib.path in counts:
                lib.active_threads = counts[lib.path]
        if unreadable:
            snapshot.notes.append(
                f"{len(unreadable)} thread(s) were busy or unreadable; pool activity is a "
                "lower bound"
            )
    snapshot.frameworks = collect_frameworks()
    snapshot.binary = collect_binary(scan_abi=scan_abi, confirm_abi=confirm_abi, maps=maps,
                                     notes=snapshot.notes)
    return snapshot


def _process_info(kmp_before: str | None) -> ProcessInfo:
    import multiprocessing

    explicit = multiprocessing.get_start_method(allow_none=True)
    info = ProcessInfo(
        pid=os.getpid(),
        # The first of get_all_start_methods() is the platform default; asking the default
        # context instead would pin it and make a later set_start_method() fail.
        start_method=explicit or multiprocessing.get_all_start_methods()[0],
        start_method_explicit=explicit is not None,
        threads_total=len(thread_ids()) or None,
        python_threads=len(python_thread_ids()),
        rtld_global=bool(sys.getdlopenflags() & os.RTLD_GLOBAL),
        threadpoolctl_preloaded="threadpoolctl" in sys.modules,
        kmp_duplicate_lib_ok_original=kmp_before,
    )
    return info


def _describe(lib: MappedLibrary) -> LoadedLibrary:
    described = LoadedLibrary(path=lib.path, family=lib.family, vendor=lib.vendor)
    owner = owning_distribution(lib.path)
    if owner:
        described.distribution, described.distribution_version = owner
    if lib.vendor == "reference":
        # Debian's alternatives install OpenBLAS/BLIS under the reference names; the symbols
        # tell. dlopen(RTLD_NOLOAD) only finds the loaded copy: it runs no initialiser.
        described.vendor = _reference_vendor(lib.path)
    if lib.family == "cuda":
        described.version = _version_from_name(lib.path)
    return described


def _reference_vendor(path: str) -> str:
    try:
        handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
    except OSError:
        return "reference"
    for symbol, vendor in (("openblas_get_config", "openblas"), ("bli_info_get_version_str",
                                                                  "blis"),
                           ("MKL_Get_Version_String", "mkl")):
        if hasattr(handle, symbol):
            return vendor
    return "reference"


def _version_from_name(path: str) -> str:
    name = os.path.basename(path)
    _, _, version = name.partition(".so.")
    return version


def _add_threadpool_info(snapshot: Snapshot, kmp_before: str | None) -> None:
    vendors = [lib.vendor for lib in snapshot.libraries if lib.family == "openmp"]
    unsafe = {"intel", "llvm"} <= set(vendors) or vendors.count("intel") > 1 \
        or vendors.count("llvm") > 1
    if unsafe:
        # Querying a runtime initialises it; in these states that alone can abort the process
        # (OMP Error #15) or crash it, and would change the process we are describing.
        snapshot.notes.append(
            "thread counts not queried: the loaded Intel/LLVM OpenMP runtimes conflict and "
            "initialising them could crash this process; library facts come from /proc only"
        )
        return
    try:
        infos = _threadpool_info()
    except Exception as exc:
        snapshot.notes.append(f"threadpoolctl failed: {type(exc).__name__}: {exc}")
        return
    finally:
        # threadpoolctl's import sets KMP_DUPLICATE_LIB_OK=True, which would hide OMP Error
        # #15 for the rest of this process; undo it if we were the ones who imported it.
        if kmp_before is None and os.environ.get(_KMP) is not None and \
                not snapshot.process.threadpoolctl_preloaded:
            del os.environ[_KMP]
    by_path = {lib.path: lib for lib in snapshot.libraries}
    for info in infos:
        lib = by_path.get(os.path.realpath(info.get("filepath", "")))
        if lib is None:
            continue
        lib.num_threads = info.get("num_threads")
        lib.version = lib.version or (info.get("version") or "")
        lib.threading_layer = info.get("threading_layer") or ""
        lib.architecture = info.get("architecture") or ""
        lib.detail["internal_api"] = info.get("internal_api", "")


def _threadpool_info() -> list[dict[str, Any]]:
    import threadpoolctl

    return threadpoolctl.threadpool_info()
