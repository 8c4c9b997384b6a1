"""Shared phrasing of evidence lines, so every rule names libraries the same way."""

from __future__ import annotations

import os

from numdoctor.snapshot.model import LoadedLibrary, Snapshot
from numdoctor.snapshot.package_names import package_label

VENDOR_NAMES = {
    "gnu": "GNU libgomp",
    "intel": "Intel libiomp5",
    "llvm": "LLVM libomp",
    "openblas": "OpenBLAS",
    "mkl": "Intel MKL",
    "blis": "BLIS",
    "flexiblas": "FlexiBLAS",
    "atlas": "ATLAS",
    "reference": "reference BLAS/LAPACK",
}

def owner(lib: LoadedLibrary) -> str:
    if lib.distribution:
        return package_label(lib.distribution, lib.distribution_version)
    return "installed by no package manager"


def describe_library(lib: LoadedLibrary, snapshot: Snapshot | None = None) -> str:
    """One evidence line; with the snapshot, an implementation also names the interface
    libraries (and update-alternatives choices) its calls come through."""
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
    interfaces = snapshot.interfaces_of(lib) if snapshot is not None else []
    if interfaces:
        names = ", ".join(os.path.basename(i.path) for i in interfaces)
        chosen = sorted({a for i in [lib, *interfaces] for a in i.alternatives})
        parts.append(f"— one implementation, one pool, also reached through {names}"
                     + (f" (update-alternatives: {', '.join(chosen)})" if chosen else ""))
    return " ".join(parts)


def packages(libs: list[LoadedLibrary], snapshot: Snapshot | None = None) -> str:
    """The packages to reinstall or align, by name: never a file path. A library no package
    manager installed is named by the frameworks linked to it."""
    names: list[str] = []
    for lib in libs:
        if lib.distribution:
            candidates = [package_label(lib.distribution)]
        else:
            users = [package_label(f.distribution) if f.distribution else f.name
                     for f in (snapshot.frameworks if snapshot else [])
                     if lib.path in f.blas_libraries
                     or any(p.runs_on == lib.path for p in f.pools)]
            candidates = users or [f"the package that brought this "
                                   f"{VENDOR_NAMES.get(lib.vendor, lib.vendor)}"]
        for name in candidates:
            if name not in names:
                names.append(name)
    return ", ".join(names)
