"""cgroups: the CPU quota and memory limit that bind a process, and its memory counters.

Both `check` (the limits that size thread pools) and the supervisor (the OOM-kill counter,
peak and limit of the cgroup a program runs in) read them here, resolved the same way: from
/proc/<pid>/cgroup and the cgroup mounts in /proc/self/mountinfo, walking from the leaf cgroup
up to the mount so that a quota set on a parent (the container) counts.

The supervisor's counters must be read while the program runs: a container's cgroup can
vanish when its last process exits. cgroup v2 keeps `oom_kill` in `memory.events`; v1 (kernel
>= 4.13) in `memory.oom_control`. The kernel counts kills of a process of the cgroup by any
OOM killer, the cgroup's own or the global one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_V1_UNLIMITED = 1 << 60


@dataclass
class Limits:
    """The CPU quota and memory limit that bind a process, and the files that set them."""

    version: int | None = None  # 1, 2, or None when not in a cgroup hierarchy we can read
    path: str = ""  # the process's cgroup path as listed in /proc/<pid>/cgroup
    cpu_quota: float | None = None  # CPUs allowed by the tightest quota on the path
    cpu_quota_source: str = ""  # the file that set it
    memory_limit: int | None = None  # bytes, tightest limit on the path (None = unlimited)
    memory_limit_source: str = ""


def parse_mountinfo(path: Path) -> list[tuple[str, str, str, frozenset[str]]]:
    """(fstype, root, mount point, super options) of every cgroup mount in a mountinfo file."""
    mounts: list[tuple[str, str, str, frozenset[str]]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if sep and len(fields) >= 5 and len(after) >= 3 and after[0] in ("cgroup", "cgroup2"):
            mounts.append((after[0], fields[3], fields[4], frozenset(after[2].split(","))))
    return mounts


def parse_proc_cgroup(path: Path) -> tuple[dict[str, str], str | None] | None:
    """(v1 controller -> path, v2 path) from a /proc/<pid>/cgroup file; None if unreadable."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    v1: dict[str, str] = {}
    v2_path: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, cg_path = parts
        if hierarchy == "0" and controllers == "":
            v2_path = cg_path
        else:
            for controller in controllers.split(","):
                v1[controller] = cg_path
    return v1, v2_path


def cgroup_dir(mount_root: str, mount_point: str, cg_path: str, root: Path) -> Path:
    """Map a path from /proc/self/cgroup to a directory under the mount."""
    base = root / mount_point.lstrip("/")
    if cg_path.startswith(mount_root):
        relative = cg_path[len(mount_root):]
    else:
        # Outside a cgroup namespace the mount root can be an ancestor path we cannot see.
        relative = cg_path
    candidate = base / relative.lstrip("/")
    try:
        return candidate if candidate.is_dir() else base
    except (OSError, ValueError):  # unreadable, or a path the kernel would not accept
        return base


def walk_up(leaf: Path, top: Path) -> list[Path]:
    """leaf, its parent, ... up to and including top (the mount point)."""
    dirs = [leaf]
    while leaf != top and top in leaf.parents:
        leaf = leaf.parent
        dirs.append(leaf)
    return dirs


def read_limits(proc_self: Path = Path("/proc/self"), root: Path = Path("/")) -> Limits:
    """Resolve the tightest CPU quota and memory limit on this process's cgroup path.

    Nested cgroups matter: a quota set on a parent (the container) binds a child cgroup that
    says "max" itself, so we walk from the leaf up to the mount point.
    """
    info = Limits()
    parsed = parse_proc_cgroup(proc_self / "cgroup")
    if parsed is None:
        return info
    v1, v2_path = parsed
    mounts = parse_mountinfo(proc_self / "mountinfo")

    if "cpu" in v1 or "memory" in v1:
        info.version = 1
        info.path = v1.get("cpu", v1.get("memory", ""))
        for fstype, mroot, mpoint, opts in mounts:
            if fstype != "cgroup":
                continue
            if "cpu" in opts and "cpu" in v1 and info.cpu_quota_source == "":
                leaf = cgroup_dir(mroot, mpoint, v1["cpu"], root)
                _v1_cpu(info, walk_up(leaf, root / mpoint.lstrip("/")))
            if "memory" in opts and "memory" in v1 and info.memory_limit_source == "":
                leaf = cgroup_dir(mroot, mpoint, v1["memory"], root)
                _v1_memory(info, walk_up(leaf, root / mpoint.lstrip("/")))
        return info

    if v2_path is not None:
        info.version = 2
        info.path = v2_path
        for fstype, mroot, mpoint, _ in mounts:
            if fstype == "cgroup2":
                leaf = cgroup_dir(mroot, mpoint, v2_path, root)
                _v2_limits(info, walk_up(leaf, root / mpoint.lstrip("/")))
                break
    return info


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _v2_limits(info: Limits, dirs: list[Path]) -> None:
    for directory in dirs:
        cpu_max = _read(directory / "cpu.max")
        if cpu_max:
            quota, _, period = cpu_max.partition(" ")
            if quota != "max":
                try:
                    cpus = int(quota) / int(period or 100000)
                except (ValueError, ZeroDivisionError):
                    cpus = None
                if cpus and (info.cpu_quota is None or cpus < info.cpu_quota):
                    info.cpu_quota = cpus
                    info.cpu_quota_source = str(directory / "cpu.max")
        memory_max = _read(directory / "memory.max")
        if memory_max and memory_max != "max":
            try:
                limit = int(memory_max)
            except ValueError:
                continue
            if info.memory_limit is None or limit < info.memory_limit:
                info.memory_limit = limit
                info.memory_limit_source = str(directory / "memory.max")


def _v1_cpu(info: Limits, dirs: list[Path]) -> None:
    for directory in dirs:
        quota = _read(directory / "cpu.cfs_quota_us")
        period = _read(directory / "cpu.cfs_period_us")
        try:
            q, p = int(quota or "-1"), int(period or "100000")
        except ValueError:
            continue
        if q > 0 and p > 0:
            cpus = q / p
            if info.cpu_quota is None or cpus < info.cpu_quota:
                info.cpu_quota = cpus
                info.cpu_quota_source = str(directory / "cpu.cfs_quota_us")


def _v1_memory(info: Limits, dirs: list[Path]) -> None:
    for directory in dirs:
        raw = _read(directory / "memory.limit_in_bytes")
        try:
            limit = int(raw or "")
        except ValueError:
            continue
        if limit < _V1_UNLIMITED and (info.memory_limit is None or limit < info.memory_limit):
            info.memory_limit = limit
            info.memory_limit_source = str(directory / "memory.limit_in_bytes")


# -- a process's memory cgroup, for the supervisor -----------------------------------------

@dataclass(frozen=True)
class MemoryCgroup:
    """One cgroup's memory counters (OOM kills, peak, limit), read while the tree runs."""

    version: int
    path: Path  # the cgroup's directory

    def oom_kills(self) -> int | None:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _counter(self.path / name, "oom_kill")

    def peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return _integer(self.path / name)

    def limit(self) -> int | None:
        if self.version == 2:
            raw = _read(self.path / "memory.max")
            return None if raw in (None, "max") else _to_int(raw)
        value = _integer(self.path / "memory.limit_in_bytes")
        return None if value is None or value >= _V1_UNLIMITED else value


def _to_int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _integer(path: Path) -> int | None:
    return _to_int(_read(path))


def _counter(path: Path, key: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _to_int(value)
    return None


@lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str, str, frozenset[str]], ...]:
    """The cgroup mounts we can see (they do not change while we run)."""
    return tuple(parse_mountinfo(Path("/proc/self/mountinfo")))


def memory_cgroup(pid: int) -> MemoryCgroup | None:
    """The memory cgroup `pid` is in now, or None when it cannot be found."""
    parsed = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup"))
    if parsed is None:
        return None
    v1, v2_path = parsed
    v1_path = v1.get("memory")
    for fstype, root, mount_point, options in _mounts():
        if v1_path is not None and fstype == "cgroup" and "memory" in options:
            return MemoryCgroup(1, cgroup_dir(root, mount_point, v1_path, Path("/")))
    if v2_path is not None:
        for fstype, root, mount_point, _options in _mounts():
            if fstype == "cgroup2":
                directory = cgroup_dir(root, mount_point, v2_path, Path("/"))
                if (directory / "memory.events").exists():
                    return MemoryCgroup(2, directory)
    return None


def global_oom_kills() -> int | None:
    """The system-wide OOM-kill counter (/proc/vmstat, kernel >= 4.13)."""
    return _counter(Path("/proc/vmstat"), "oom_kill")
