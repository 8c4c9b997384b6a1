"""How a package recorded as an owner is named to a user.

Owners are recorded as pip distribution names ("numpy") or with the package manager as a
prefix ("conda:openblas", "deb:libopenblas0-pthread", "rpm:flexiblas"); users know them as
"libopenblas0-pthread (apt)".
"""

from __future__ import annotations

MANAGERS = {"deb": "apt", "rpm": "dnf/yum", "conda": "conda"}


def package_label(distribution: str, version: str = "") -> str:
    """"numpy 2.4.6", "libopenblas0-pthread 0.3.21+ds-4 (apt)"; "" for no owner."""
    kind, sep, name = distribution.partition(":")
    manager = MANAGERS.get(kind) if sep else None
    label = " ".join(part for part in (name if manager else distribution, version) if part)
    return f"{label} ({manager})" if manager else label
