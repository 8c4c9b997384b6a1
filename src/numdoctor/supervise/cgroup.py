"""cgroup memory counters of a process: the OOM-kill count, the peak usage and the limit.

The counters must be read while the program runs: a container's cgroup can vanish when its
last process exits. cgroup v2 keeps `oom_kill` in `memory.events`; v1 (kernel >= 4.13) in
`memory.oom_control`. The kernel counts kills of a process of the cgroup by any OOM killer,
the cgroup's own or the global one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from numdoctor.snapshot.system import parse_mountinfo, parse_proc_cgroup

_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class MemoryCgroup:
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


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


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
            return MemoryCgroup(1, _join(mount_point, root, v1_path))
    if v2_path is not None:
        for fstype, root, mount_point, _options in _mounts():
            if fstype == "cgroup2":
                directory = _join(mount_point, root, v2_path)
                if (directory / "memory.events").exists():
                    return MemoryCgroup(2, directory)
    return None


def _join(mount_point: str, root: str, path: str) -> Path:
    relative = path[len(root):] if root != "/" and path.startswith(root) else path
    return Path(mount_point) / relative.lstrip("/")


def global_oom_kills() -> int | None:
    """The system-wide OOM-kill counter (/proc/vmstat, kernel >= 4.13)."""
    return _counter(Path("/proc/vmstat"), "oom_kill")
