"""Which installed package ships a file: pip distributions (RECORD), conda packages and
operating-system packages (dpkg, rpm: numdoctor.snapshot.os_packages).

The common case is answered by reading one RECORD: `site-packages/numpy.libs/x.so` belongs to
the distribution named like its top directory. Namespace directories (`nvidia/cublas/...`) and
odd names fall back to an index of every RECORD in that site directory, built once.

`owning_distribution` answers "which pip (or conda) distribution": what `pip install` would
change. `owning_package` answers "who installed this file", and asks the OS package database
too: for a file no pip RECORD lists (`libopenblas0-pthread` owns Debian's OpenBLAS), and for a
distribution the OS installed (Debian's python3-scipy ships a RECORD but no pip INSTALLER).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from functools import cache, lru_cache
from pathlib import Path


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@cache
def _dist_infos(site: str) -> dict[str, Path]:
    """normalized distribution name -> its .dist-info directory, for one site directory."""
    found: dict[str, Path] = {}
    try:
        entries = os.listdir(site)
    except OSError:
        return found
    for entry in entries:
        if entry.endswith(".dist-info"):
            name = entry[: -len(".dist-info")].rsplit("-", 1)[0]
            found[_normalize(name)] = Path(site, entry)
    return found


def _installer(dist_info: Path) -> str:
    """The tool that installed a distribution, from its INSTALLER file ("" = none says)."""
    try:
        with open(dist_info / "INSTALLER", encoding="utf-8", errors="replace") as fh:
            return fh.readline().strip().lower()
    except OSError:
        return ""


def _metadata_name_version(dist_info: Path) -> tuple[str, str]:
    name, version = "", ""
    try:
        with open(dist_info / "METADATA", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
                if (name and version) or line == "\n":
                    break
    except OSError:
        pass
    return name, version


@cache
def _record(dist_info: Path) -> frozenset[str]:
    try:
        with open(dist_info / "RECORD", encoding="utf-8", errors="replace", newline="") as fh:
            return frozenset(row[0] for row in csv.reader(fh) if row)
    except (OSError, csv.Error):  # a RECORD with NUL bytes or broken quoting lists nothing
        return frozenset()


def _record_lists(dist_info: Path, relative: str) -> bool:
    """Whether one RECORD names a file: a substring test, no CSV parse (RECORDs are long)."""
    text = _record_text(dist_info)
    return f"\n{relative}," in text or f'\n"{relative}",' in text


@lru_cache(maxsize=8)
def _record_text(dist_info: Path) -> str:
    # A few recent ones are kept: the libraries and the framework of one package are
    # asked about in turn, and torch's RECORD alone is over a megabyte to read.
    try:
        return "\n" + (dist_info / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@cache
def _full_index(site: str) -> dict[str, Path]:
    """absolute file path -> dist-info, for every distribution of a site directory.

    RECORD paths may leave the site directory (`../../../lib/libiomp5.so` for the data files
    of intel-openmp or mkl), so they are resolved against it.
    """
    index: dict[str, Path] = {}
    for dist_info in _dist_infos(site).values():
        for rel in _record(dist_info):
            index.setdefault(os.path.normpath(os.path.join(site, rel)), dist_info)
    return index


@lru_cache(maxsize=16)
def _site_dirs(sys_path: tuple[str, ...]) -> list[str]:
    dirs = []
    for entry in sys_path:
        if entry and os.path.isdir(entry) and entry not in dirs:
            dirs.append(os.path.realpath(entry))
    return dirs


def owning_distribution(path: str) -> tuple[str, str] | None:
    """(distribution name, version) that installed `path`, or None when pip did not.

    Looked up along this process's sys.path; answers are remembered for the life of the
    process (`numdoctor check` asks about the same files while its collector imports and
    again when it assembles the snapshot).
    """
    return _owner(os.path.realpath(path), tuple(sys.path))


# INSTALLER values written by OS packagers (Fedora's RPM macros write "rpm"; Debian's
# python3-* packages ship none): such a distribution belongs to the OS package database.
_OS_INSTALLERS = frozenset({"", "rpm", "dpkg", "debian", "apt"})


def owning_package(path: str) -> tuple[str, str] | None:
    """(package, version) of whatever installed `path`: a pip distribution ("numpy"), or
    "conda:<name>", "deb:<name>", "rpm:<name>"; None when nothing claims it."""
    return _package(os.path.realpath(path), tuple(sys.path))


@lru_cache(maxsize=8192)
def _package(real: str, sys_path: tuple[str, ...]) -> tuple[str, str] | None:
    from numdoctor.snapshot.os_packages import os_package_owner

    dist_info = _record_owner(real, sys_path)
    if dist_info is not None and _installer(dist_info) not in _OS_INSTALLERS:
        return _metadata_name_version(dist_info)
    if dist_info is None:
        conda = _conda_owner(real)
        if conda is not None:
            return conda
    system = os_package_owner(real)
    if system is not None:
        return system
    return _metadata_name_version(dist_info) if dist_info is not None else None


@lru_cache(maxsize=8192)
def _owner(real: str, sys_path: tuple[str, ...]) -> tuple[str, str] | None:
    dist_info = _record_owner(real, sys_path)
    if dist_info is not None:
        return _metadata_name_version(dist_info)
    return _conda_owner(real)


@lru_cache(maxsize=8192)
def _record_owner(real: str, sys_path: tuple[str, ...]) -> Path | None:
    """The .dist-info whose RECORD lists `real`, along `sys_path`."""
    sites = [s for s in sorted(_site_dirs(sys_path), key=len, reverse=True) if _dist_infos(s)]
    for site in sites:
        if not real.startswith(site + os.sep):
            continue
        relative = real[len(site) + 1:]
        top = relative.split(os.sep, 1)[0]
        guess = _dist_infos(site).get(_normalize(top.removesuffix(".libs")))
        if guess is not None and _record_lists(guess, relative):
            return guess
        owner = _full_index(site).get(real)
        if owner is not None:
            return owner
    # Data files installed beside the environment (<prefix>/lib/libiomp5.so): only a file
    # under the prefix of a site directory can be pip's. A site directory that is not
    # <prefix>/lib/pythonX.Y/site-packages (a --target directory such as /opt/python) has
    # no such prefix.
    for site in sites:
        prefix = _environment_prefix(site)
        if prefix is None:
            continue
        if real.startswith(f"{prefix}{os.sep}") and not real.startswith(site + os.sep):
            owner = _full_index(site).get(real)
            if owner is not None:
                return owner
    return None


def _environment_prefix(site: str) -> str | None:
    """<prefix> of a <prefix>/lib*/python*/site-packages directory, else None."""
    parts = Path(site).parts
    if len(parts) < 4 or parts[-1] not in ("site-packages", "dist-packages") \
            or not parts[-2].startswith("python") or not parts[-3].startswith("lib"):
        return None
    prefix = str(Path(*parts[:-3]))
    return None if prefix == os.sep else prefix


@cache
def _conda_index(prefix: str) -> dict[str, tuple[str, str]]:
    index: dict[str, tuple[str, str]] = {}
    meta = Path(prefix, "conda-meta")
    for record in meta.glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        owner = (f"conda:{data.get('name', '')}", str(data.get("version", "")))
        for rel in data.get("files", ()):
            index[rel] = owner
    return index


def _conda_owner(real: str) -> tuple[str, str] | None:
    for prefix in {sys.prefix, os.environ.get("CONDA_PREFIX", "")}:
        if not prefix or not os.path.isdir(os.path.join(prefix, "conda-meta")):
            continue
        prefix = os.path.realpath(prefix)
        if real.startswith(prefix + os.sep):
            return _conda_index(prefix).get(real[len(prefix) + 1:])
    return None


def distribution_of_module(module_file: str) -> tuple[str, str] | None:
    """Owner of a module's file (used for frameworks and for Python frames)."""
    return owning_distribution(module_file)
