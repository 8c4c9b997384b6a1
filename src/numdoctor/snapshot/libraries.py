"""Which shared libraries of interest a process has mapped, read passively from /proc.

Passive means: no call into any of the libraries. Parsing `/proc/<pid>/maps` cannot crash the
process even when two incompatible OpenMP runtimes are loaded; calling them can.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from numdoctor.core.procfs import MapEntry

# (family, vendor, literal prefixes, basename pattern). auditwheel renames bundled copies to
# `libgomp-a34b3233.so.1.0.0` and distributions add versions (`libomp-14.so.5`), so every
# pattern allows an optional `-<suffix>` before `.so`. The prefixes select the one pattern to
# try, compiled on first use: this module runs in the collector child right after the user's
# imports, where compiling all of them up front cost more than classifying every path.
_H = r"(?:-[0-9A-Za-z_.\-]+?)?"
_PATTERNS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("openmp", "gnu", ("libgomp",), rf"^libgomp(?!-plugin){_H}\.so"),
    ("openmp", "intel", ("libiomp5",), rf"^libiomp5{_H}\.so"),
    ("openmp", "llvm", ("libomp",), rf"^libomp{_H}\.so"),
    ("blas", "openblas", ("libopenblas", "libscipy_openblas"),
     rf"^lib(?:scipy_)?openblas[\w]*?{_H}\.so"),
    ("blas", "mkl", ("libmkl_rt", "libmkl_core"), rf"^libmkl_(?:rt|core){_H}\.so"),
    ("blas", "blis", ("libblis",), rf"^libblis[\w]*?{_H}\.so"),
    ("blas", "flexiblas", ("libflexiblas",), rf"^libflexiblas{_H}\.so"),
    # ATLAS: Debian's libatlas3-base (behind its own libblas.so.3 alternative), RHEL's
    # libsatlas/libtatlas.
    ("blas", "atlas", ("libatlas", "libsatlas", "libtatlas"), rf"^lib[st]?atlas{_H}\.so"),
    ("blas", "reference", ("libblas", "libcblas", "liblapack"),
     rf"^lib(?:c?blas|lapack)(?:64)?{_H}\.so"),
    ("cuda", "cudart", ("libcudart.so",), r"^libcudart\.so"),
    ("cuda", "cublas", ("libcublas.so",), r"^libcublas\.so"),
    ("cuda", "cublasLt", ("libcublasLt.so",), r"^libcublasLt\.so"),
    ("cuda", "cusolver", ("libcusolver.so",), r"^libcusolver\.so"),
    ("cuda", "cusparse", ("libcusparse.so",), r"^libcusparse\.so"),
    ("cuda", "cufft", ("libcufft.so",), r"^libcufft\.so"),
    ("cuda", "cudnn", ("libcudnn.so",), r"^libcudnn\.so"),
    ("cuda", "nccl", ("libnccl.so",), r"^libnccl\.so"),
    ("cuda", "driver", ("libcuda.so",), r"^libcuda\.so"),
    ("cuda", "nvml", ("libnvidia-ml.so",), r"^libnvidia-ml\.so"),
    ("cxx", "libstdc++", ("libstdc++",), rf"^libstdc\+\+{_H}\.so"),
]
_ANY_PREFIX = tuple(prefix for _, _, prefixes, _ in _PATTERNS for prefix in prefixes)
_COMPILED: dict[int, re.Pattern[str]] = {}


def _pattern(index: int) -> re.Pattern[str]:
    compiled = _COMPILED.get(index)
    if compiled is None:
        compiled = _COMPILED[index] = re.compile(_PATTERNS[index][3])
    return compiled


# MKL's threading layer lives in its own library; its presence says which one is in use.
_MKL_THREADING = r"^libmkl_(intel_thread|gnu_thread|tbb_thread|sequential)\.so"


# Named tuples, not dataclasses: this module runs in the collector child right after the
# user's imports, where every millisecond of our own start-up is on the critical path.
class MappedLibrary(NamedTuple):
    path: str  # real path
    family: str
    vendor: str
    # Address ranges of the executable segments, for attributing threads and stack frames.
    text_ranges: tuple[tuple[int, int], ...]


# One alternation, so classifying a path costs one regex match instead of one per pattern.
def classify(path: str) -> tuple[str, str] | None:
    """(family, vendor) for a library path, or None when it is not of interest."""
    name = os.path.basename(path)
    if not name.startswith(_ANY_PREFIX):
        return None
    for index, (family, vendor, prefixes, _) in enumerate(_PATTERNS):
        if name.startswith(prefixes) and _pattern(index).match(name):
            return family, vendor
    return None


def mkl_threading_layers(maps: list[MapEntry]) -> list[str]:
    """MKL threading-layer libraries mapped in, e.g. ["gnu_thread"]."""
    found = []
    for entry in maps:
        name = os.path.basename(entry.path)
        match = re.match(_MKL_THREADING, name) if name.startswith("libmkl_") else None
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def loaded_libraries(maps: list[MapEntry]) -> list[MappedLibrary]:
    """Libraries of interest, one per real path, in the order they were mapped."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    realpaths: dict[str, str] = {}
    seen: dict[str, tuple[str, str] | None] = {}
    for entry in maps:
        if not entry.path.startswith("/") or entry.path.endswith(" (deleted)"):
            continue
        if entry.path in seen:
            kind = seen[entry.path]
        else:
            kind = seen[entry.path] = classify(entry.path)
        if kind is None:
            continue
        real = realpaths.get(entry.path)
        if real is None:
            real = realpaths[entry.path] = os.path.realpath(entry.path)
        kinds.setdefault(real, kind)
        spans = ranges.setdefault(real, [])
        if "x" in entry.perms:
            spans.append((entry.start, entry.end))
    # libmkl_rt loads libmkl_core behind the scenes: one MKL, listed once.
    rt_dirs = {os.path.dirname(p) for p in kinds if os.path.basename(p).startswith("libmkl_rt")}
    return [
        MappedLibrary(path=path, family=kinds[path][0], vendor=kinds[path][1],
                      text_ranges=tuple(ranges[path]))
        for path in kinds
        if not (os.path.basename(path).startswith("libmkl_core")
                and os.path.dirname(path) in rt_dirs)
    ]


def all_text_ranges(maps: list[MapEntry]) -> list[tuple[int, int, str]]:
    """Executable ranges of every mapped file, sorted, for mapping addresses to libraries."""
    return sorted(
        (e.start, e.end, e.path) for e in maps if "x" in e.perms and e.path.startswith("/")
    )
