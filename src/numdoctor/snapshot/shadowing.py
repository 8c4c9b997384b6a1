"""Numerical packages with several copies along sys.path (a source tree shadowing a wheel).

Read from the file system with the inspected process's sys.path and its imported package
directories, so it can run in the process that assembles the snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import lru_cache

from numdoctor.snapshot.abi import version_file
from numdoctor.snapshot.model import PackageCopy, ShadowedPackage
from numdoctor.snapshot.ownership import owning_package
from numdoctor.snapshot.reloads import NUMERICAL_PACKAGES


def find_shadowed(sys_path: list[str], mapped_paths: Iterable[str],
                  imported: Mapping[str, str]) -> list[ShadowedPackage]:
    """`imported`: package name -> the directory of the copy in sys.modules."""
    mapped: list[str] | None = None  # resolved only when a package has two copies
    found = []
    for name, directories in package_copies(sys_path):
        copies = [PackageCopy(path=path, sys_path_index=index) for index, path in directories]
        if mapped is None:
            mapped = sorted({os.path.realpath(p) for p in mapped_paths if p.startswith("/")})
        for copy in copies:
            owner = owning_package(os.path.join(copy.path, "__init__.py"))
            if owner and ":" in owner[0]:  # conda/apt/rpm: their versions are not the package's
                copy.distribution, copy.version = owner[0], version_file(copy.path) or owner[1]
            elif owner:
                copy.distribution, copy.version = owner
            else:  # a source tree or a copied directory: the package may still say
                copy.version = version_file(copy.path)
            prefix = copy.path + os.sep
            copy.native_mapped = any(p.startswith(prefix) for p in mapped)
        found.append(ShadowedPackage(name=name, copies=copies,
                                     imported=imported.get(name, "")))
    return found


def package_copies(sys_path: list[str]) -> list[tuple[str, list[tuple[int, str]]]]:
    """(package, [(sys.path index, real directory), ...]) for each numerical package found
    in more than one sys.path directory."""
    return _package_copies(tuple(sys_path), tuple(_mtime(p) for p in sys_path))


@lru_cache(maxsize=4)
def _package_copies(sys_path: tuple[str, ...], _mtimes: tuple[int, ...]
                    ) -> list[tuple[str, list[tuple[int, str]]]]:
    entries = _path_entries(list(sys_path))
    found = []
    for name in NUMERICAL_PACKAGES:
        copies: list[tuple[int, str]] = []
        for index, entry in entries:
            directory = os.path.join(entry, name)
            if not os.path.isfile(os.path.join(directory, "__init__.py")):
                continue
            real = os.path.realpath(directory)
            if all(path != real for _, path in copies):
                copies.append((index, real))
        if len(copies) > 1:
            found.append((name, copies))
    return found


def _mtime(directory: str) -> int:
    # A package added to or removed from a directory changes the directory's mtime.
    try:
        return os.stat(directory or os.curdir).st_mtime_ns
    except OSError:
        return 0


def _path_entries(sys_path: list[str]) -> list[tuple[int, str]]:
    entries = []
    for index, entry in enumerate(sys_path):
        directory = entry or os.getcwd()
        if os.path.isdir(directory):
            entries.append((index, directory))
    return entries
