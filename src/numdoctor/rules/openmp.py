"""OpenMP runtimes: mixed families, duplicate copies, the Error #15 mask."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import VENDOR_NAMES, describe_library, packages
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.model import Snapshot

_TRUTHY = {"1", "true", "yes", "on", "y", "t"}


@rule("OMP001", "OpenMP runtimes of different families are loaded together", Severity.WARNING)
def mixed_openmp_families(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    Two OpenMP implementations (GNU libgomp, Intel libiomp5, LLVM libomp) are mapped into one
    process. Each keeps its own thread pool and its own idea of how many threads may run, and
    libiomp5 and libomp export the same `__kmpc_*`/`GOMP_*` entry points, so code compiled
    against one may be served by the other depending on load order.

    **Why it matters.** Intel + LLVM is known to cause random crashes and deadlocks on Linux
    (threadpoolctl issues 41 and 49): this pair is reported as an error. GNU + Intel or
    GNU + LLVM usually "works" but oversubscribes the CPUs (two pools, each sized to all
    cores) and makes thread limits apply to one pool only.

    **Fix.** Make one runtime serve everything: install builds that share a runtime (e.g. all
    conda-forge packages with `llvm-openmp`, or pip wheels built with GCC), set
    `MKL_THREADING_LAYER=GNU` so MKL uses libgomp instead of libiomp5, or remove the package
    that brings the odd runtime (`intel-openmp` is often pulled in only by `mkl`). As a stop-gap,
    `OMP_NUM_THREADS=1` keeps both pools from running at once.
    """
    libs = snapshot.implementations("openmp")
    vendors = sorted({lib.vendor for lib in libs})
    if len(vendors) < 2:
        return
    dangerous = {"intel", "llvm"} <= set(vendors)
    names = " + ".join(VENDOR_NAMES[v] for v in vendors)
    yield rule.finding(
        [describe_library(lib, snapshot) for lib in libs],
        severity=Severity.ERROR if dangerous else Severity.WARNING,
        title=f"{names} are loaded in one process",
        why=(
            "Intel and LLVM OpenMP in one process are known to crash or deadlock at random."
            if dangerous
            else "Two OpenMP thread pools compete for the same cores, and OMP_* settings may "
            "reach only one of them."
        ),
        fix=(
            "Use one OpenMP runtime: set MKL_THREADING_LAYER=GNU if MKL brought libiomp5, or "
            f"install builds of {packages(libs, snapshot)} that share one runtime. Stop-gap: "
            "OMP_NUM_THREADS=1."
        ),
    )


@rule("OMP002", "Several copies of the same OpenMP runtime are loaded", Severity.WARNING)
def duplicate_openmp_copies(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    Two or more files of the same OpenMP runtime are mapped, typically because each wheel
    vendors its own copy (`scikit_learn.libs/libgomp-<hash>.so.1.0.0` next to
    `torch/lib/libgomp.so.1`). Runtimes are counted, not names: symbolic links and aliases of
    one file (conda's `libgomp.so.1` -> `libomp.so`, LLVM's `libiomp5.so` -> `libomp.so`)
    are the one runtime the dynamic linker loaded.

    **Why it matters.** Intel's libiomp5 aborts with "OMP: Error #15: Initializing
    libiomp5.so, but found libiomp5.so already initialized" when the second copy starts —
    unless `KMP_DUPLICATE_LIB_OK=TRUE` hides it, which trades the abort for intermittent hangs
    and wrong results. Two libomp copies segfault or abort (common on macOS with torch). Two
    libgomp copies do not fail loudly but run two pools, each sized to all CPUs: 3x slowdowns
    are reported (pytorch#98836: 35.9 s vs 10.7 s with and without scikit-learn loaded).

    **Fix.** Load one copy: install packages from one distribution channel (all conda-forge, or
    all pip), or preload the runtime you want first (`LD_PRELOAD=/path/to/libgomp.so.1`) so the
    others resolve to it. Limiting threads (`OMP_NUM_THREADS`) reduces the oversubscription.
    """
    by_vendor: dict[str, list] = {}
    for lib in snapshot.implementations("openmp"):
        by_vendor.setdefault(lib.vendor, []).append(lib)
    for vendor, libs in sorted(by_vendor.items()):
        if len(libs) < 2:
            continue
        fatal = vendor in ("intel", "llvm")
        threads = [lib.num_threads for lib in libs if lib.num_threads]
        why = {
            "intel": "The second libiomp5 to initialise aborts the process with OMP Error #15 "
                     "(or, with KMP_DUPLICATE_LIB_OK=TRUE, hangs and wrong results).",
            "llvm": "Two libomp copies in one process are known to segfault or abort.",
        }.get(vendor, f"{len(libs)} separate pools"
              + (f" of {', '.join(map(str, threads))} threads" if threads else "")
              + " compete for the same cores; thread limits set through one copy do not "
              "reach the others.")
        yield rule.finding(
            [describe_library(lib, snapshot) for lib in libs],
            severity=Severity.ERROR if fatal else Severity.WARNING,
            title=f"{len(libs)} copies of {VENDOR_NAMES[vendor]} are loaded",
            why=why,
            fix=(
                f"Keep one copy of {VENDOR_NAMES[vendor]}: install {packages(libs, snapshot)} "
                "from one channel (all pip or all conda-forge), or LD_PRELOAD the copy you "
                "want so the others resolve to it. Meanwhile set OMP_NUM_THREADS to the "
                f"effective CPU count ({snapshot.system.effective_cpus or 'see above'}) divided "
                "by the number of pools that run at once."
            ),
        )


@rule("OMP003", "KMP_DUPLICATE_LIB_OK is set and hides OpenMP Error #15", Severity.WARNING)
def duplicate_lib_ok(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    `KMP_DUPLICATE_LIB_OK=TRUE` tells Intel's OpenMP runtime not to abort when a second copy
    of itself initialises ("OMP: Error #15"). Intel documents it as an unsafe, unsupported
    workaround.

    **Why it matters.** The abort was telling the truth: two runtimes now share one process,
    and the result is intermittent hangs at 0 % CPU and wrong numbers instead of a clear
    error. scikit-learn and threadpoolctl set this variable when they are imported (with
    `os.environ.setdefault`), so it is often set without the user knowing; `numdoctor check`
    records which of its imports set it.

    **Fix.** Unset it and fix the duplicate runtime it was hiding (see OMP001/OMP002). If an
    import sets it, export `KMP_DUPLICATE_LIB_OK=FALSE` before Python starts: `setdefault`
    keeps an explicit value.
    """
    value = snapshot.environment.get("KMP_DUPLICATE_LIB_OK")
    if value is None or value.strip().lower() not in _TRUTHY:
        return
    evidence = [f"KMP_DUPLICATE_LIB_OK={value}"]
    origin = snapshot.process.kmp_duplicate_lib_ok_original
    setters = [a.module for a in snapshot.imports if "KMP_DUPLICATE_LIB_OK" in a.environment_set]
    fix = "Unset KMP_DUPLICATE_LIB_OK and remove the duplicate OpenMP runtime instead."
    if setters:
        evidence.append(f"set during `import {setters[0]}` (numdoctor compared os.environ "
                        "before and after each import)")
        fix = (f"`import {setters[0]}` sets it only where it is unset: export "
               "KMP_DUPLICATE_LIB_OK=FALSE before Python starts, and remove any duplicate "
               "OpenMP runtime instead.")
    elif snapshot.process.threadpoolctl_preloaded and value == "True":
        sources = "threadpoolctl is imported in this process and sets"
        if any(f.name == "sklearn" for f in snapshot.frameworks):
            sources = "scikit-learn and threadpoolctl are imported in this process and set"
        evidence.append(f"{sources} exactly this value on import (os.environ.setdefault), so "
                        "it is the likely source")
    elif origin is not None:
        evidence.append("set before numdoctor looked (by the environment or the program)")
    intel = snapshot.implementations("openmp", "intel")
    evidence.extend(describe_library(lib) for lib in intel)
    yield rule.finding(
        evidence,
        severity=Severity.ERROR if len(intel) > 1 else Severity.WARNING,
        why=(
            f"{len(intel)} Intel OpenMP copies are loaded right now; without this variable "
            "the process would have aborted with OMP Error #15."
            if len(intel) > 1
            else "A second Intel OpenMP runtime loaded later would not abort but silently "
            "misbehave (hangs, wrong results)."
        ),
        fix=fix,
    )
