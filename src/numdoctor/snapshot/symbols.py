"""Loaded libraries that export the same BLAS/LAPACK entry points.

With `RTLD_GLOBAL`, the first library that defines `dgemm_` serves every later caller that
links against the plain Fortran name, whichever BLAS it was built for. Every mapped ELF
object is asked for a fixed set of probe symbols through its own hash table (`elf.py`), so
statically linked copies (torch's MKL inside libtorch_cpu.so) are found too.
"""

from __future__ import annotations

from collections.abc import Iterable

from numdoctor.snapshot.elf import exported_symbols, is_elf
from numdoctor.snapshot.model import SymbolClash, SymbolExporter
from numdoctor.snapshot.ownership import owning_package

# The Fortran-ABI and CBLAS names every BLAS/LAPACK provider exports, in LP64 and the
# common ILP64 (`64_`) flavour. Prefixed builds (scipy-openblas's `scipy_dgemm_`) cannot
# clash and are left out on purpose.
PROBE_SYMBOLS: tuple[str, ...] = tuple(
    [f"{p}{name}_" for name in ("gemm", "gemv", "trsm", "syrk", "axpy", "dot", "scal")
     for p in ("s", "d")]
    + ["zgemm_", "cgemm_"]
    + [f"d{name}_" for name in ("gesdd", "gesvd", "getrf", "getrs", "gesv", "potrf", "syevd",
                                "syevr", "geqrf", "gelsd", "gels")]
    + ["sgesdd_", "sgetrf_", "ssyevd_"]
    + ["cblas_dgemm", "cblas_sgemm", "cblas_ddot"]
    + ["dgemm_64_", "sgemm_64_", "dgesdd_64_"]
)


def mapped_objects(mapped: Iterable[str]) -> list[str]:
    """The ELF files among the paths mapped into a process, in mapping order.

    /proc/<pid>/maps already names files by their resolved path, so no realpath() is needed.
    """
    raw = dict.fromkeys(p for p in mapped if p.startswith("/")
                        and not p.endswith(" (deleted)") and not p.startswith("/dev/"))
    return [p for p in raw if is_elf(p)]


def find_symbol_clashes(objects: list[str]) -> tuple[int, list[SymbolClash]]:
    """(libraries examined, groups of `objects` exporting the same probe symbols)."""
    exporters: dict[str, list[str]] = {}
    for path in objects:
        for symbol in exported_symbols(path, PROBE_SYMBOLS):
            exporters.setdefault(symbol, []).append(path)
    groups: dict[tuple[str, ...], list[str]] = {}
    for symbol in PROBE_SYMBOLS:
        paths = exporters.get(symbol, [])
        if len(paths) > 1:
            groups.setdefault(tuple(paths), []).append(symbol)
    clashes = []
    for files, symbols in groups.items():
        libraries = []
        for path in files:
            exporter = SymbolExporter(path=path)
            owner = owning_package(path)
            if owner:
                exporter.distribution, exporter.distribution_version = owner
            libraries.append(exporter)
        clashes.append(SymbolClash(symbols=symbols, libraries=libraries))
    return len(objects), clashes
