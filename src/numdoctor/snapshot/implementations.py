"""Libraries as they are, not as files: which implementation really serves the calls.

A BLAS is often reached through interface libraries with no pool of their own:

- Debian/Ubuntu: `libblas.so.3` and `liblapack.so.3` are chosen with update-alternatives;
  with OpenBLAS chosen, `openblas-pthread/libblas.so.3` needs `libopenblas.so.0`, the
  implementation and its one thread pool.
- FlexiBLAS (Fedora, RHEL, EPEL): `libflexiblas.so.3` loads a backend at run time
  (`flexiblas/libflexiblas_openblas-openmp.so`), which needs the implementation.
- Reference LAPACK on top of a BLAS (`liblapack.so.3` needs `libblas.so.3`).
- conda's `libblas.so.3` is a symbolic link to the implementation: /proc maps name the
  target, so it is one file already.

The ELF dynamic section tells them apart without calling anything: an interface library
needs (DT_NEEDED) another mapped BLAS library by its SONAME, and does not export the
implementation's own entry points (`openblas_get_config`, `MKL_Get_Version_String`,
`bli_info_get_version_str`). The same DT_NEEDED names tell which BLAS and which OpenMP
runtime each framework's extension modules are linked against.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from numdoctor.snapshot.binary import is_shared_object
from numdoctor.snapshot.elf import exported_symbols, linkage
from numdoctor.snapshot.model import LoadedLibrary

# Entry points only an implementation defines (interfaces forward everything else).
_IMPLEMENTATION_SYMBOLS = ("openblas_get_config", "MKL_Get_Version_String",
                           "bli_info_get_version_str")
# File names that are implementations whatever they export.
_IMPLEMENTATION_NAMES = ("libopenblas", "libscipy_openblas", "libmkl_", "libblis", "libatlas",
                         "libsatlas", "libtatlas")
ALTERNATIVES_DIR = "/etc/alternatives"


def resolve_interfaces(libraries: list[LoadedLibrary], *,
                       alternatives_dir: str = ALTERNATIVES_DIR) -> None:
    """Fill in `soname`, `implementation` (and the implementation's vendor) of interface
    libraries, and the update-alternatives links that select each BLAS file."""
    blas = [lib for lib in libraries if lib.family == "blas"]
    if not blas:
        return
    for lib in blas:
        lib.soname = linkage(lib.path).soname
    names = _by_name(blas)
    forward: dict[str, str] = {}
    for lib in blas:
        if _is_implementation(lib):
            continue
        targets = [names[n] for n in linkage(lib.path).needed if n in names]
        targets += _flexiblas_backends(lib, blas)
        served_by = next((t for t in targets if t.path != lib.path), None)
        if served_by is not None:
            forward[lib.path] = served_by.path
    by_path = {lib.path: lib for lib in blas}
    for lib in blas:
        target = forward.get(lib.path, "")
        seen = {lib.path}
        while target in forward and target not in seen:
            seen.add(target)
            target = forward[target]
        if target and target != lib.path:
            lib.implementation = target
            lib.vendor = by_path[target].vendor
    # Alternatives are named after the link they manage (libblas.so.3-x86_64-linux-gnu):
    # only those named like a loaded library are resolved.
    stems = {_stem(name) for lib in blas
             for name in (lib.soname, os.path.basename(lib.path)) if name}
    chosen = read_alternatives(alternatives_dir, tuple(sorted(stems))) if stems else {}
    for lib in blas:
        lib.alternatives = chosen.get(lib.path, [])


def _stem(name: str) -> str:
    """libblas.so.3 -> libblas.so; libopenblasp-r0.3.21.so -> libopenblasp-r0.3.21.so"""
    head, sep, _ = name.partition(".so")
    return head + sep


def _by_name(libraries: Iterable[LoadedLibrary]) -> dict[str, LoadedLibrary]:
    """SONAME and file name -> library, as the dynamic linker matches DT_NEEDED against
    the objects already loaded."""
    names: dict[str, LoadedLibrary] = {}
    for lib in libraries:
        for name in (lib.soname, os.path.basename(lib.path)):
            if name:
                names.setdefault(name, lib)
    return names


def _is_implementation(lib: LoadedLibrary) -> bool:
    if os.path.basename(lib.path).startswith(_IMPLEMENTATION_NAMES):
        return True
    return bool(exported_symbols(lib.path, _IMPLEMENTATION_SYMBOLS))


def _flexiblas_backends(lib: LoadedLibrary, blas: list[LoadedLibrary]) -> list[LoadedLibrary]:
    """FlexiBLAS's core opens its backend with dlopen: no DT_NEEDED says which."""
    name = os.path.basename(lib.path)
    if not name.startswith("libflexiblas") or name.startswith("libflexiblas_"):
        return []
    return [other for other in blas
            if os.path.basename(other.path).startswith("libflexiblas_")
            and not any(word in os.path.basename(other.path) for word in ("hook", "fallback"))]


def read_alternatives(directory: str = ALTERNATIVES_DIR,
                      prefixes: tuple[str, ...] = ("",)) -> dict[str, list[str]]:
    """Real path of each update-alternatives target -> the alternative names choosing it
    (only alternatives whose names start with one of `prefixes`)."""
    chosen: dict[str, list[str]] = {}
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(prefixes))
    except OSError:
        return chosen
    for name in names:
        link = os.path.join(directory, name)
        if os.path.islink(link):
            chosen.setdefault(os.path.realpath(link), []).append(name)
    # The run-time link (libblas.so.3-<triplet>) is the choice that matters; the unversioned
    # one (libblas.so-<triplet>) is for compiling against it.
    return {target: [n for n in names if ".so." in n] or names
            for target, names in chosen.items()}


def linked_libraries(package_dir: str, mapped: Iterable[str],
                     libraries: list[LoadedLibrary], family: str) -> list[str]:
    """Real paths of the `family` implementations that the mapped extension modules of one
    package (its directory and its auditwheel `<name>.libs` directory) are linked to."""
    candidates = [lib for lib in libraries if lib.family == family]
    if not candidates or not package_dir:
        return []
    package_dir = package_dir.rstrip(os.sep)
    roots = (package_dir + os.sep, package_dir + ".libs" + os.sep)
    # A name the package's own directories provide wins (the loader found it there first
    # through the RPATH); otherwise the first library of that name.
    names = _by_name(sorted(candidates, key=lambda lib: not lib.path.startswith(roots)))
    found: list[str] = []
    for path in mapped:
        if not path.startswith(roots) or not is_shared_object(os.path.basename(path)):
            continue
        for needed in linkage(path).needed:
            lib = names.get(needed)
            if lib is None:
                continue
            served = lib.implementation or lib.path
            if served not in found:
                found.append(served)
    return found
