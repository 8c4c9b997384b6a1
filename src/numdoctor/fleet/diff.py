"""The heterogeneity diff: which workers differ from the majority, in what, and how.

Each member is reduced to a profile: a flat map from (category, setting) to a short value
("numpy" -> "2.4.6", "OMP_NUM_THREADS" -> "1", "OpenMP runtimes" -> "GNU libgomp
[scikit-learn 1.9.1]"). Workers are compared with each other setting by setting; the value
most workers hold is the majority (when one value is held by more workers than any other).
The client and the scheduler run no tasks, so only the settings that must match across the
whole cluster (Python, package versions) are compared against the workers' majority.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from numdoctor.findings import Severity
from numdoctor.fleet.collect import WORKER, MemberFacts
from numdoctor.rules._evidence import VENDOR_NAMES
from numdoctor.snapshot.environment import THREAD_LIMIT_VARS

PYTHON = "Python"
PACKAGES = "packages"
LIBRARIES = "native libraries"
THREADS = "thread settings"
ENVIRONMENT = "environment"
CPU = "CPU"
CPUS = "CPUs"

CATEGORY_ORDER = (PYTHON, PACKAGES, LIBRARIES, THREADS, ENVIRONMENT, CPU, CPUS)
# Settings compared between the client/scheduler and the workers.
CLUSTER_WIDE = (PYTHON, PACKAGES)

NOT_INSTALLED = "(not installed)"
UNSET = "(unset)"
NONE_LOADED = "(none loaded)"

_FAMILIES = (("openmp", "OpenMP runtimes"), ("blas", "BLAS libraries"),
             ("cuda", "CUDA libraries"))
_SET_LIKE = {"CPU flags", *(title for _, title in _FAMILIES)}
_THREAD_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_THREADING_LAYER", "MKL_DYNAMIC")
# Set per worker on purpose (one GPU per worker in dask-cuda): differences are by design.
_PER_WORKER_BY_DESIGN = {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                         "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"}
_INFO_KEYS = {(CPU, "CPU model")}

Key = tuple[str, str]


@dataclass
class Difference:
    """One setting on which members disagree."""

    category: str
    key: str
    majority: str | None  # None: no value is held by more workers than every other
    majority_members: list[str]
    compared: int  # workers compared on this setting
    deviations: list[tuple[str, list[str]]] = field(default_factory=list)  # (value, labels)
    outsiders: bool = False  # client/scheduler against the workers' majority

    @property
    def severity(self) -> Severity:
        if self.category == CPUS or (self.category, self.key) in _INFO_KEYS:
            return Severity.INFO
        return Severity.WARNING

    def describe(self, value: str) -> str:
        """How `value` differs from the majority, in a few words."""
        if self.majority is None:
            return value
        if self.key in _SET_LIKE:
            mine, theirs = _items(self.key, value), _items(self.key, self.majority)
            parts = []
            if theirs - mine:
                parts.append("lacks " + ", ".join(sorted(theirs - mine)))
            if mine - theirs:
                parts.append("has " + ", ".join(sorted(mine - theirs)))
            return "; ".join(parts) or value
        return value

    def to_dict(self) -> dict:
        return {
            "category": self.category, "setting": self.key, "majority": self.majority,
            "majority_members": self.majority_members, "compared": self.compared,
            "deviations": [{"value": v, "how": self.describe(v), "members": m}
                           for v, m in self.deviations],
            "severity": self.severity.value, "outsiders": self.outsiders,
        }


def profile(member: MemberFacts) -> dict[Key, str | None]:
    """The comparable settings of one member; None means "not applicable here"."""
    snapshot = member.snapshot
    values: dict[Key, str | None] = {}
    if snapshot is None:
        return values
    system = snapshot.system
    values[PYTHON, "Python"] = f"{system.python_version} ({system.python_implementation})"
    for name, version in member.packages.items():
        values[PACKAGES, name] = version
    for family, title in _FAMILIES:
        names = sorted({_library(lib) for lib in snapshot.libs(family)})
        values[LIBRARIES, title] = ", ".join(names) if names else NONE_LOADED
    if member.nthreads is not None:
        values[THREADS, "Dask threads"] = str(member.nthreads)
    for vendor in sorted({lib.vendor for lib in snapshot.libraries
                          if lib.family in ("openmp", "blas")}):
        sizes = sorted({lib.num_threads for lib in snapshot.libraries
                        if lib.vendor == vendor and lib.num_threads is not None})
        values[THREADS, f"{VENDOR_NAMES.get(vendor, vendor)} pool size"] = \
            ", ".join(map(str, sizes)) if sizes else None
    torch = snapshot.framework("torch")
    if torch is not None and torch.details.get("num_threads"):
        values[THREADS, "torch threads"] = str(torch.details["num_threads"])
    for name, value in snapshot.environment.items():
        if name in _PER_WORKER_BY_DESIGN:
            continue
        category = THREADS if _is_thread_variable(name) else ENVIRONMENT
        values[category, name] = value
    values[CPU, "CPU flags"] = " ".join(system.cpu_flags) or "(none known)"
    values[CPU, "CPU model"] = system.cpu_model or "?"
    values[CPUS, "effective CPUs"] = _number(system.effective_cpus)
    values[CPUS, "online CPUs"] = _number(system.cpu_count)
    quota = system.cgroup.cpu_quota
    values[CPUS, "cgroup CPU quota"] = "none" if quota is None else f"{quota:g}"
    return values


def absent(key: Key) -> str | None:
    """The value of a setting a member's profile does not mention."""
    category, name = key
    if category == PACKAGES:
        return NOT_INSTALLED
    if category == ENVIRONMENT or (category == THREADS and _is_thread_variable(name)):
        return UNSET
    return None


def compare(members: Iterable[MemberFacts]) -> list[Difference]:
    """Every setting on which the workers disagree, then the client/scheduler mismatches."""
    members = list(members)
    workers = [m for m in members if m.role == WORKER and m.ok]
    profiles = {m.label: profile(m) for m in workers}
    keys = sorted({k for p in profiles.values() for k in p}, key=_key_order)
    differences = []
    majorities: dict[Key, tuple[str | None, int]] = {}
    for key in keys:
        values = {label: p.get(key, absent(key)) for label, p in profiles.items()}
        values = {label: v for label, v in values.items() if v is not None}
        if not values:
            continue
        counts = Counter(values.values()).most_common()
        majority = counts[0][0] if len(counts) == 1 or counts[0][1] > counts[1][1] else None
        majorities[key] = (majority, len(values))
        if len(counts) < 2:
            continue
        difference = Difference(key[0], key[1], majority,
                                [label for label, v in values.items() if v == majority],
                                len(values))
        for value, _ in counts:
            if value != majority and value is not None:
                difference.deviations.append(
                    (value, [label for label, v in values.items() if v == value]))
        differences.append(difference)
    differences.extend(_outsiders(members, majorities))
    return differences


def _outsiders(members: list[MemberFacts],
               majorities: dict[Key, tuple[str | None, int]]) -> list[Difference]:
    differences = []
    for member in members:
        if member.role == WORKER or not member.ok:
            continue
        mine = profile(member)
        for key, (majority, compared) in majorities.items():
            if key[0] not in CLUSTER_WIDE or majority is None or key not in mine:
                continue
            # Extra packages on the client (notebooks, dev tools) are no mismatch; versions
            # that differ from the workers' are, since tasks and results are pickled across.
            if majority == NOT_INSTALLED:
                continue
            value = mine[key]
            if value is not None and value != majority:
                workers = [f"{compared} worker(s)"]
                differences.append(Difference(key[0], key[1], majority, workers, compared,
                                              [(value, [member.label])], outsiders=True))
    return differences


def _library(lib) -> str:
    name = VENDOR_NAMES.get(lib.vendor, lib.vendor)
    if lib.version:
        name += f" {lib.version}"
    owner = f"{lib.distribution} {lib.distribution_version}".strip() if lib.distribution \
        else "system"
    return f"{name} [{owner}]"


def _is_thread_variable(name: str) -> bool:
    return name in THREAD_LIMIT_VARS or name.startswith(_THREAD_PREFIXES)


def _number(value: int | None) -> str:
    return "?" if value is None else str(value)


def _items(key: str, value: str) -> set[str]:
    if value in (NONE_LOADED, "(none known)"):
        return set()
    return {item for item in value.split(" " if key == "CPU flags" else ", ") if item}


def _key_order(key: Key) -> tuple[int, str]:
    category, name = key
    return (CATEGORY_ORDER.index(category), name.lower())
