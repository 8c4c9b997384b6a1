"""Installed version pairs that a table of public sources says do not work together.

Packages released before NumPy 2 usually declared `numpy>=1.x` with no upper bound, so their
metadata allows what their binaries cannot run. `numdoctor/data/known_incompatibilities.json`
lists such pairs, each with its source and first fixed release; matching it against the
installed versions is a fact about the environment, computed with the requirement conflicts
(and cached with them, since it needs `packaging`, which costs `check` 20 ms to import).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from numdoctor.snapshot.model import KnownIncompatibility

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet


@dataclass(frozen=True)
class KnownPair:
    """Two distributions known to break each other in these version ranges."""

    distribution: str  # canonical name
    affected: SpecifierSet
    other: str  # canonical name
    other_versions: SpecifierSet
    problem: str
    fixed_in: str
    source: str


@cache
def known_incompatibilities() -> tuple[KnownPair, ...]:
    """The entries of data/known_incompatibilities.json (validated once)."""
    from importlib import resources

    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name

    text = resources.files("numdoctor").joinpath("data/known_incompatibilities.json") \
        .read_text(encoding="utf-8")
    pairs = []
    for i, entry in enumerate(json.loads(text)["entries"]):
        try:
            pairs.append(KnownPair(
                distribution=canonicalize_name(entry["distribution"]),
                affected=SpecifierSet(entry["affected"]),
                other=canonicalize_name(entry["with"]),
                other_versions=SpecifierSet(entry["with_versions"]),
                problem=entry["problem"], fixed_in=entry["fixed_in"], source=entry["source"],
            ))
        except (KeyError, InvalidSpecifier) as exc:
            raise ValueError(f"known_incompatibilities.json entry {i} is invalid: {exc}") from exc
    return tuple(pairs)


def contains(spec: SpecifierSet, version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def known_pair(distribution: str, version: str, other: str, other_version: str
               ) -> KnownPair | None:
    """The table entry saying `distribution` `version` fails with `other` `other_version`."""
    from packaging.utils import canonicalize_name

    key = canonicalize_name(distribution)
    for pair in known_incompatibilities():
        if pair.distribution == key and pair.other == other \
                and contains(pair.affected, version) \
                and contains(pair.other_versions, other_version):
            return pair
    return None


def find_known_incompatible(versions: dict[str, str]) -> list[KnownIncompatibility]:
    """The table entries that the installed `versions` (canonical name -> version) match."""
    found = []
    for pair in known_incompatibilities():
        version = versions.get(pair.distribution)
        other_version = versions.get(pair.other)
        if version is None or other_version is None:
            continue
        if contains(pair.affected, version) and contains(pair.other_versions, other_version):
            found.append(KnownIncompatibility(
                distribution=pair.distribution, version=version, other=pair.other,
                other_version=other_version, affected=str(pair.affected),
                other_versions=str(pair.other_versions), problem=pair.problem,
                fixed_in=pair.fixed_in, source=pair.source))
    return found
