"""Declared requirements of the installed numerical distributions that are not met.

Like `pip check`, restricted to the distributions that matter here so it stays fast: those
in a curated list, those that require one of the core array libraries, and (as targets)
their dependencies. Metadata is read from the `*.dist-info`/`*.egg-info` directories along
sys.path, first one wins, as `importlib.metadata` resolves them; only the header block of
each METADATA is parsed (long descriptions can be hundreds of kilobytes).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from numdoctor.snapshot.model import KnownIncompatibility, RequirementConflict

if TYPE_CHECKING:
    from packaging.markers import Marker

# packaging is imported inside the functions that parse requirements: `check` reads them
# from the cache on its start-up path, where importing packaging alone would cost ~12 ms.


def canonicalize_name(name: str) -> str:
    """PEP 503 normalisation, as packaging.utils.canonicalize_name does it."""
    return re.sub(r"[-_.]+", "-", name).lower()

# Distributions that define the numerical stack; a distribution that requires one of CORE
# counts as numerical too.
CORE = frozenset({"numpy", "scipy", "torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib",
                  "cupy"})
CURATED = CORE | frozenset({
    "scikit-learn", "pandas", "numba", "llvmlite", "numexpr", "bottleneck", "h5py", "tables",
    "pyarrow", "matplotlib", "scikit-image", "statsmodels", "xgboost", "lightgbm", "keras",
    "ml-dtypes", "threadpoolctl", "joblib", "opencv-python", "opencv-python-headless",
    "intel-openmp", "mkl", "dask", "distributed", "xarray", "numcodecs", "zarr",
    "torchvision", "torchaudio", "tensorboard", "tf-keras", "cupy-cuda12x", "cupy-cuda11x",
})


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class Installed:
    """An installed distribution and what it requires."""

    name: str  # as declared
    version: str
    requires: list[str] = field(default_factory=list)


def installed_distributions(path: list[str] | None = None) -> dict[str, Installed]:
    """canonical name -> the first distribution of that name along `path` (sys.path)."""
    found: dict[str, Installed] = {}
    seen_dirs: set[str] = set()
    for entry in path if path is not None else sys.path:
        directory = os.path.realpath(entry or os.getcwd())
        if directory in seen_dirs or not os.path.isdir(directory):
            continue
        seen_dirs.add(directory)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for item in names:
            if item.endswith(".dist-info"):
                metadata = os.path.join(directory, item, "METADATA")
            elif item.endswith(".egg-info"):
                candidate = os.path.join(directory, item)
                metadata = os.path.join(candidate, "PKG-INFO") if os.path.isdir(candidate) \
                    else candidate
            else:
                continue
            dist = _read_headers(metadata)
            if dist is None:
                continue
            found.setdefault(canonicalize_name(dist.name), dist)
    return found


def _read_headers(path: str) -> Installed | None:
    name = version = ""
    requires: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            last: list[str] | None = None
            for line in fh:
                if line in ("\n", "\r\n"):
                    break  # end of the header block; the description follows
                if line[:1] in (" ", "\t") and last is not None:
                    last[-1] += " " + line.strip()  # folded header line
                    continue
                key, _, value = line.partition(":")
                value = value.strip()
                last = None
                if key == "Name":
                    name = value
                elif key == "Version":
                    version = value
                elif key == "Requires-Dist":
                    requires.append(value)
                    last = requires
    except OSError:
        return None
    return Installed(name, version, requires) if name else None


def numerical_distributions(installed: dict[str, Installed]) -> set[str]:
    numerical = set()
    for key, dist in installed.items():
        if key in CURATED or _requires_core(dist):
            numerical.add(key)
    return numerical


def _requires_core(dist: Installed) -> bool:
    # A cheap name match: full parsing is kept for the distributions that pass this test.
    for text in dist.requires:
        match = _NAME.match(text)
        if match and canonicalize_name(match.group(0)) in CORE \
                and "extra" not in text.partition(";")[2]:
            return True
    return False


def find_conflicts(installed: dict[str, Installed]) -> tuple[dict[str, str],
                                                             list[RequirementConflict]]:
    """(numerical distributions and their dependencies -> version, unmet requirements)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    numerical = numerical_distributions(installed)
    involved: dict[str, str] = {}
    conflicts: list[RequirementConflict] = []
    environment = {"extra": ""}
    for key in sorted(numerical):
        dist = installed[key]
        involved[key] = dist.version
        for text in dist.requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not _applies(requirement.marker, environment):
                continue
            dep = canonicalize_name(requirement.name)
            target = installed.get(dep)
            if target is None:
                conflicts.append(RequirementConflict(
                    distribution=dist.name, version=dist.version, requirement=str(requirement),
                    dependency=requirement.name, installed=""))
                continue
            involved[dep] = target.version
            if not requirement.specifier:
                continue
            try:
                ok = requirement.specifier.contains(Version(target.version), prereleases=True)
            except InvalidVersion:
                continue
            if not ok:
                conflicts.append(RequirementConflict(
                    distribution=dist.name, version=dist.version, requirement=str(requirement),
                    dependency=target.name, installed=target.version))
    return dict(sorted(involved.items())), conflicts


def _applies(marker: Marker, environment: dict[str, str]) -> bool:
    try:
        return marker.evaluate(environment)
    except Exception:  # an undefined or malformed marker: pip would not install for it either
        return False


def requirement_on(dist: Installed | None, dependency: str) -> str:
    """The requirement `dist` declares on `dependency` (unconditional ones), or ""."""
    from packaging.requirements import InvalidRequirement, Requirement

    if dist is None:
        return ""
    for text in dist.requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) == dependency and (
                requirement.marker is None or _applies(requirement.marker, {"extra": ""})):
            return str(requirement)
    return ""


# -- cache --------------------------------------------------------------------------------
# Reading ~100 METADATA files and parsing their requirements costs tens of milliseconds on
# every `check`; the answer changes only when a distribution is added or removed, which
# changes the mtime of its site directory. So the result is kept on disk, keyed by those.
_CACHE_VERSION = 3


def _cache_file(dirs: list[tuple[str, int]]) -> str | None:
    from numdoctor.snapshot.cache import cache_dir, short_hash

    root = cache_dir()
    return None if root is None else \
        os.path.join(root, f"metadata-{short_hash(_cache_key(dirs))}.json")


def _cache_key(dirs: list[tuple[str, int]]) -> str:
    return repr((_CACHE_VERSION, sys.version, dirs))


def cached_conflicts(path: list[str] | None = None) -> tuple[
        dict[str, Installed], dict[str, str], list[RequirementConflict],
        list[KnownIncompatibility]]:
    """installed_distributions(), find_conflicts() and the known-incompatible pairs among
    the versions involved, remembered across runs."""
    dirs = []
    for entry in path if path is not None else sys.path:
        directory = os.path.realpath(entry or os.getcwd())
        # Only directories that hold metadata count: `python -m` puts the working directory
        # on sys.path, and one whose files keep changing must not invalidate the cache. A
        # distribution installed there makes it count.
        try:
            if any(name.endswith((".dist-info", ".egg-info")) for name in os.listdir(directory)):
                dirs.append((directory, os.stat(directory).st_mtime_ns))
        except OSError:
            continue
    key = tuple(dirs)
    if key not in _REMEMBERED:
        _REMEMBERED[key] = _cached_conflicts(path, dirs)
    installed, involved, conflicts, known = _REMEMBERED[key]
    return dict(installed), dict(involved), list(conflicts), list(known)


# In-process memory of cached_conflicts(), by the same key as the file: `numdoctor check`
# reads it while its collector imports, then again when it assembles the snapshot.
_REMEMBERED: dict[tuple, tuple[dict[str, Installed], dict[str, str],
                               list[RequirementConflict], list[KnownIncompatibility]]] = {}


def _cached_conflicts(path: list[str] | None, dirs: list[tuple[str, int]]) -> tuple[
        dict[str, Installed], dict[str, str], list[RequirementConflict],
        list[KnownIncompatibility]]:
    from numdoctor.snapshot import cache
    from numdoctor.snapshot.known_pairs import find_known_incompatible

    file = _cache_file(dirs)
    data = cache.load(file) if file is not None else None
    if isinstance(data, dict) and data.get("key") == _cache_key(dirs):
        try:
            installed = {k: Installed(*v) for k, v in data["installed"].items()}
            conflicts = [RequirementConflict(**c) for c in data["conflicts"]]
            known = [KnownIncompatibility(**k) for k in data["known_incompatible"]]
            return installed, data["involved"], conflicts, known
        except (KeyError, TypeError):
            pass  # written by another numdoctor version: computed afresh below
    installed = installed_distributions(path)
    involved, conflicts = find_conflicts(installed)
    known = find_known_incompatible(involved)
    if file is not None:
        import dataclasses

        cache.store(file, {"key": _cache_key(dirs),
                           "installed": {k: [d.name, d.version, d.requires]
                                         for k, d in installed.items()},
                           "involved": involved,
                           "conflicts": [dataclasses.asdict(c) for c in conflicts],
                           "known_incompatible": [dataclasses.asdict(k) for k in known]})
    return installed, involved, conflicts, known
