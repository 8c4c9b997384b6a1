"""Facts that only the inspected process itself can give: the first half of collecting.

What is mapped, which pools have started, what threadpoolctl and the frameworks report, which
modules were imported twice, the start method, the environment. Everything comes back as
plain JSON-able data (`LiveFacts`), so it can cross a pipe from the collector child.

Everything that can be read from the file system instead (which package owns a library,
what NumPy an extension was built for, installed requirements, the machine's cgroup) is
left to `numdoctor.snapshot.collect.assemble`, which can run in another process, and in
parallel with this process's imports. This module runs right after the user's imports in
`numdoctor check`, so it imports nothing heavier than the standard library modules that
every numerical framework has already loaded.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from numdoctor.core.procfs import MapEntry, read_maps, thread_ids
from numdoctor.snapshot.libraries import loaded_libraries, mkl_threading_layers
from numdoctor.snapshot.threads import StackScan, python_thread_ids

LiveFacts = dict[str, Any]

_KMP = "KMP_DUPLICATE_LIB_OK"


def live_facts(*, threadpools: bool = True) -> LiveFacts:
    """What this process has loaded and started, read without changing it.

    `threadpools=False` skips threadpoolctl (which calls into every BLAS/OpenMP library).
    Every step is isolated: one that raises is recorded in `errors` (reported as ND001) and
    the others still run.
    """
    from numdoctor.snapshot.environment import pick_environment
    from numdoctor.snapshot.failures import Steps
    from numdoctor.snapshot.frameworks import collect_frameworks
    from numdoctor.snapshot.reloads import find_reloads

    kmp_before = os.environ.get(_KMP)
    notes: list[str] = []
    steps = Steps()
    facts: LiveFacts = {"created": time.time(), "notes": notes, "errors": steps.errors}
    facts["process"] = steps.run("process facts", lambda: _process_info(kmp_before),
                                 {"pid": os.getpid(), "kmp_duplicate_lib_ok_original": kmp_before})
    facts["environment"] = steps.run("environment variables", pick_environment, {})
    try:
        maps = read_maps()
    except OSError as exc:
        maps = []
        notes.append(f"could not read /proc/self/maps ({exc}); libraries unknown")
    except Exception as exc:
        maps = []
        steps.record("memory map (/proc/self/maps)", exc)
    facts["process"]["memory_map_read"] = bool(maps)
    facts["mapped"] = list(dict.fromkeys(
        e.path for e in maps if e.path.startswith("/") and not e.path.endswith(" (deleted)")))
    mapped = steps.run("loaded libraries", lambda: loaded_libraries(maps), [])
    facts["libraries"] = libraries = steps.run("library vendors", lambda: [
        {"path": lib.path, "family": lib.family,
         "vendor": _reference_vendor(lib.path) if lib.vendor == "reference" else lib.vendor}
        for lib in mapped
    ], [{"path": lib.path, "family": lib.family, "vendor": lib.vendor} for lib in mapped])
    facts["mkl_threading_layers"] = steps.run("MKL threading layers",
                                              lambda: mkl_threading_layers(maps), [])
    # Which pools have started: parked workers are read now; workers still spinning after
    # their last task are read again at the end, once the rest has been collected.
    pools: dict[str, Iterable[tuple[int, int]]] = {
        lib.path: lib.text_ranges for lib in mapped if lib.family in ("openmp", "blas")}
    scan = steps.run("thread stacks", lambda: _started_scan(pools, maps), None)
    preloaded = bool(facts["process"].get("threadpoolctl_preloaded"))
    facts["threadpools"] = steps.run(
        "threadpoolctl", lambda: _threadpool_info(libraries, kmp_before, preloaded, notes),
        []) if threadpools else []
    facts["frameworks"] = steps.run("frameworks", collect_frameworks, [])
    facts["reloads"] = steps.run("module reloads", find_reloads, [])
    facts["sys_path"] = steps.run("sys.path", _sys_path, [])
    facts["numpy"] = steps.run("NumPy location", _numpy_location, None)
    facts["imported_packages"] = steps.run("imported packages", _imported_package_dirs, {})
    # Without /proc maps, the imported extension modules stand in for what is mapped.
    facts["extension_files"] = [] if maps else steps.run("extension modules",
                                                         _extension_files, [])
    counts, unreadable = steps.run("thread stacks", lambda: _finish_scan(scan), ({}, []))
    facts["active_threads"] = counts
    if unreadable:
        notes.append(f"{len(unreadable)} thread(s) were busy or unreadable; pool activity is "
                     "a lower bound")
    return facts


def _started_scan(pools: dict[str, Iterable[tuple[int, int]]],
                  maps: list[MapEntry]) -> StackScan:
    scan = StackScan(pools, maps, skip_tids=python_thread_ids())
    scan.start()
    return scan


def _finish_scan(scan: StackScan | None) -> tuple[dict[str, int], list[int]]:
    if scan is None:
        return {}, []
    counts, _examined, unreadable = scan.finish()
    return counts, unreadable


def _sys_path() -> list[str]:
    cwd = os.getcwd()
    return [entry or cwd for entry in sys.path if isinstance(entry, str)]


def _process_info(kmp_before: str | None) -> dict[str, Any]:
    explicit, default = _start_methods()
    return {
        "pid": os.getpid(),
        "start_method": explicit or default,
        "start_method_explicit": explicit is not None,
        "threads_total": len(thread_ids()) or None,
        "python_threads": len(python_thread_ids()),
        "rtld_global": bool(sys.getdlopenflags() & os.RTLD_GLOBAL),
        "threadpoolctl_preloaded": "threadpoolctl" in sys.modules,
        "kmp_duplicate_lib_ok_original": kmp_before,
    }


def _start_methods() -> tuple[str | None, str]:
    """(the method the program set, the platform default), without importing multiprocessing.

    A start method can only have been chosen through an imported multiprocessing; when it
    is not imported, the platform default applies, which is what multiprocessing computes.
    """
    mp = sys.modules.get("multiprocessing")
    if mp is not None and hasattr(mp, "get_start_method"):
        # The first of get_all_start_methods() is the platform default; asking the default
        # context instead would pin it and make a later set_start_method() fail.
        return mp.get_start_method(allow_none=True), mp.get_all_start_methods()[0]
    if sys.platform == "win32" or sys.platform == "darwin":
        return None, "spawn"
    return None, "forkserver" if sys.version_info >= (3, 14) else "fork"


def _reference_vendor(path: str) -> str:
    """Debian's alternatives install OpenBLAS/BLIS under the reference names; symbols tell.

    dlopen(RTLD_NOLOAD) only finds the loaded copy: it runs no initialiser.
    """
    import ctypes

    try:
        handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
    except OSError:
        return "reference"
    for symbol, vendor in (("openblas_get_config", "openblas"),
                           ("bli_info_get_version_str", "blis"),
                           ("MKL_Get_Version_String", "mkl")):
        if hasattr(handle, symbol):
            return vendor
    return "reference"


def _threadpool_info(libraries: list[dict[str, str]], kmp_before: str | None,
                     preloaded: bool, notes: list[str]) -> list[dict[str, Any]]:
    vendors = [lib["vendor"] for lib in libraries if lib["family"] == "openmp"]
    unsafe = {"intel", "llvm"} <= set(vendors) or vendors.count("intel") > 1 \
        or vendors.count("llvm") > 1
    if unsafe:
        # Querying a runtime initialises it; in these states that alone can abort the process
        # (OMP Error #15) or crash it, and would change the process we are describing.
        notes.append(
            "thread counts not queried: the loaded Intel/LLVM OpenMP runtimes conflict and "
            "initialising them could crash this process; library facts come from /proc only"
        )
        return []
    try:
        import threadpoolctl

        return [{k: v for k, v in info.items() if isinstance(v, (str, int, float, type(None)))}
                for info in threadpoolctl.threadpool_info()]
    except Exception as exc:
        notes.append(f"threadpoolctl failed: {type(exc).__name__}: {exc}")
        return []
    finally:
        # threadpoolctl's import sets KMP_DUPLICATE_LIB_OK=True, which would hide OMP Error
        # #15 for the rest of this process; undo it if we were the ones who imported it.
        if kmp_before is None and os.environ.get(_KMP) is not None and not preloaded:
            del os.environ[_KMP]


def _numpy_location() -> dict[str, Any] | None:
    """The loaded NumPy, or the directory an import would pick; found without importing."""
    module = sys.modules.get("numpy")
    location = getattr(module, "__file__", None)
    if isinstance(location, str):
        return {"version": str(getattr(module, "__version__", "")),
                "path": os.path.dirname(os.path.realpath(location)), "loaded": True}
    import importlib.util

    try:
        spec = importlib.util.find_spec("numpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return {"version": "", "loaded": False,
            "path": os.path.realpath(next(iter(spec.submodule_search_locations)))}


def _imported_package_dirs() -> dict[str, str]:
    """Directory of each imported numerical package (for the sys.path shadowing check)."""
    from numdoctor.snapshot.reloads import NUMERICAL_PACKAGES

    found = {}
    for name in NUMERICAL_PACKAGES:
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str):
            found[name] = os.path.dirname(os.path.realpath(path))
    return found


def _extension_files() -> list[str]:
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        name = os.path.basename(path)
        if name.endswith(".so") or ".so." in name:
            found.add(os.path.realpath(path))
    return sorted(found)
