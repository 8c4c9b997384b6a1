"""Shared phrasing of evidence lines, so every rule names libraries the same way."""

from __future__ import annotations

from numdoctor.snapshot.model import LoadedLibrary

VENDOR_NAMES = {
    "gnu": "GNU libgomp",
    "intel": "Intel libiomp5",
    "llvm": "LLVM libomp",
    "openblas": "OpenBLAS",
    "mkl": "Intel MKL",
    "blis": "BLIS",
    "flexiblas": "FlexiBLAS",
    "reference": "reference BLAS/LAPACK",
}


def owner(lib: LoadedLibrary) -> str:
    if lib.distribution:
        return f"{lib.distribution} {lib.distribution_version}".strip()
    return "not from a pip package"


def describe_library(lib: LoadedLibrary) -> str:
    parts = [f"{VENDOR_NAMES.get(lib.vendor, lib.vendor)}: {lib.path} [{owner(lib)}]"]
    extras = []
    if lib.version:
        extras.append(f"version {lib.version}")
    if lib.num_threads is not None:
        extras.append(f"{lib.num_threads} threads")
    if lib.threading_layer:
        extras.append(f"threading layer {lib.threading_layer}")
    if lib.active_threads:
        extras.append(f"{lib.active_threads} pool thread(s) running")
    if extras:
        parts.append(f"({', '.join(extras)})")
    return " ".join(parts)


def packages(libs: list[LoadedLibrary]) -> str:
    names = []
    for lib in libs:
        name = lib.distribution or lib.path
        if name not in names:
            names.append(name)
    return ", ".join(names)
