"""Which installed package ships a file: pip distributions (RECORD) and conda packages.

The common case is answered by reading one RECORD: `site-packages/numpy.libs/x.so` belongs to
the distribution named like its top directory. Namespace directories (`nvidia/cublas/...`) and
odd names fall back to an index of every RECORD in that site directory, built once.
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
    except OSError:
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


@lru_cache(maxsize=8192)
def _owner(real: str, sys_path: tuple[str, ...]) -> tuple[str, str] | None:
    sites = [s for s in sorted(_site_dirs(sys_path), key=len, reverse=True) if _dist_infos(s)]
    for site in sites:
        if not real.startswith(site + os.sep):
            continue
        relative = real[len(site) + 1:]
        top = relative.split(os.sep, 1)[0]
        guess = _dist_infos(site).get(_normalize(top.removesuffix(".libs")))
        if guess is not None and _record_lists(guess, relative):
            return _metadata_name_version(guess)
        owner = _full_index(site).get(real)
        if owner is not None:
            return _metadata_name_version(owner)
    # Data files installed beside the environment (<prefix>/lib/libiomp5.so): only a file
    # under the prefix of a site directory can be pip's.
    for site in sites:
        prefix = Path(site).parents[2]  # <prefix>/lib/pythonX.Y/site-packages
        if real.startswith(f"{prefix}{os.sep}") and not real.startswith(site + os.sep):
            owner = _full_index(site).get(real)
            if owner is not None:
                return _metadata_name_version(owner)
    return _conda_owner(real)


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
