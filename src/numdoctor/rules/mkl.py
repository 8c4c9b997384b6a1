"""MKL's threading layer against GNU OpenMP."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import describe_library
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.model import Snapshot


@rule("MKL001", "MKL's Intel threading layer is used next to GNU libgomp", Severity.ERROR)
def mkl_threading_layer(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    MKL is loaded with its Intel threading layer (libiomp5), or `MKL_THREADING_LAYER=INTEL` is
    set, while GNU libgomp is loaded too — typically by PyTorch or scikit-learn.

    **Why it matters.** MKL itself refuses this combination in some builds ("Error:
    mkl-service + Intel(R) MKL: MKL_THREADING_LAYER=INTEL is incompatible with libgomp.so.1
    library", pytorch#37377, numpy#24683); where it does not refuse, two OpenMP runtimes run
    side by side (see OMP001) and hangs or crashes depend on import order.

    **Fix.** `export MKL_THREADING_LAYER=GNU` so MKL runs on libgomp, or import the package
    that brings MKL (numpy from conda's defaults channel, for example) before the one that
    brings libgomp.
    """
    gomp = snapshot.libs("openmp", "gnu")
    if not gomp:
        return
    env_layer = snapshot.environment.get("MKL_THREADING_LAYER", "").strip().upper()
    mkl = snapshot.libs("blas", "mkl")
    intel_layer = [
        lib for lib in mkl
        if lib.threading_layer == "intel"
        or "intel_thread" in lib.detail.get("threading_libraries", [])
    ]
    if intel_layer:
        yield rule.finding(
            [*(describe_library(lib) for lib in intel_layer),
             *(describe_library(lib) for lib in gomp),
             f"MKL_THREADING_LAYER={env_layer or '(unset: MKL picks INTEL)'}"],
            why="MKL's Intel threading layer and libgomp are both active in this process.",
            fix="export MKL_THREADING_LAYER=GNU before starting Python.",
        )
    elif env_layer == "INTEL":
        yield rule.finding(
            ["MKL_THREADING_LAYER=INTEL", *(describe_library(lib) for lib in gomp)],
            severity=Severity.WARNING,
            title="MKL_THREADING_LAYER=INTEL is set while GNU libgomp is loaded",
            why="When MKL loads it will refuse to start or run a second OpenMP runtime.",
            fix="export MKL_THREADING_LAYER=GNU (or unset it).",
        )
