"""Facts about the machine: OS, Python, CPU, cgroup quotas, memory.

cgroup files are read relative to a `root` and a `proc` directory so tests can point them at
fixture trees; the machine's own cgroup cannot be changed from a test.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

from numdoctor.snapshot.model import CgroupInfo, SystemInfo

# SIMD and matrix extensions that decide which kernels numerical libraries dispatch to, and
# which an "Illegal instruction" is usually about.
RELEVANT_CPU_FLAGS = (
    "sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi2",
    "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
    # aarch64 names (/proc/cpuinfo "Features")
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm",
)
# cgroup v1 reports "no limit" as a page-rounded LONG_MAX.
_V1_UNLIMITED = 1 << 60


def collect_system(proc: Path = Path("/proc"), root: Path = Path("/")) -> SystemInfo:
    uname = platform.uname()
    info = SystemInfo(
        os=f"{uname.system} {platform.freedesktop_os_release().get('PRETTY_NAME', '')}".strip()
        if hasattr(platform, "freedesktop_os_release") and _has_os_release()
        else uname.system,
        kernel=uname.release,
        machine=uname.machine,
        libc=_libc(),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        python_executable=sys.executable,
    )
    info.cpu_model, info.cpu_flags = read_cpuinfo(proc / "cpuinfo")
    info.cpu_count = os.cpu_count()
    try:
        info.affinity_count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info.affinity_count = None
    info.cgroup = read_cgroup(proc / "self", root)
    info.effective_cpus = effective_cpus(info.cpu_count, info.affinity_count,
                                         info.cgroup.cpu_quota)
    info.memory_total = read_memtotal(proc / "meminfo")
    return info


def _libc() -> str:
    # platform.libc_ver() scans the interpreter binary; the C library can simply be asked.
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return " ".join(platform.libc_ver()).strip()


def _has_os_release() -> bool:
    try:
        platform.freedesktop_os_release()
        return True
    except OSError:
        return False


def effective_cpus(
    cpu_count: int | None, affinity: int | None, quota: float | None
) -> int | None:
    candidates = [c for c in (cpu_count, affinity) if c]
    if quota:
        candidates.append(max(1, math.ceil(quota)))
    return min(candidates) if candidates else None


def read_cpuinfo(path: Path) -> tuple[str, list[str]]:
    model = ""
    flags: set[str] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return platform.processor(), []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware"):
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in RELEVANT_CPU_FLAGS if f in flags]


def read_memtotal(path: Path) -> int | None:
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# -- cgroups -----------------------------------------------------------------------------------

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


def _cgroup_dir(mount_root: str, mount_point: str, cg_path: str, root: Path) -> Path:
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


def _walk_up(leaf: Path, top: Path) -> list[Path]:
    """leaf, its parent, ... up to and including top (the mount point)."""
    dirs = [leaf]
    while leaf != top and top in leaf.parents:
        leaf = leaf.parent
        dirs.append(leaf)
    return dirs


def read_cgroup(proc_self: Path = Path("/proc/self"), root: Path = Path("/")) -> CgroupInfo:
    """Resolve the tightest CPU quota and memory limit on this process's cgroup path.

    Nested cgroups matter: a quota set on a parent (the container) binds a child cgroup that
    says "max" itself, so we walk from the leaf up to the mount point.
    """
    info = CgroupInfo()
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
                leaf = _cgroup_dir(mroot, mpoint, v1["cpu"], root)
                _v1_cpu(info, _walk_up(leaf, root / mpoint.lstrip("/")))
            if "memory" in opts and "memory" in v1 and info.memory_limit_source == "":
                leaf = _cgroup_dir(mroot, mpoint, v1["memory"], root)
                _v1_memory(info, _walk_up(leaf, root / mpoint.lstrip("/")))
        return info

    if v2_path is not None:
        info.version = 2
        info.path = v2_path
        for fstype, mroot, mpoint, _ in mounts:
            if fstype == "cgroup2":
                leaf = _cgroup_dir(mroot, mpoint, v2_path, root)
                _v2_limits(info, _walk_up(leaf, root / mpoint.lstrip("/")))
                break
    return info


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _v2_limits(info: CgroupInfo, dirs: list[Path]) -> None:
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


def _v1_cpu(info: CgroupInfo, dirs: list[Path]) -> None:
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


def _v1_memory(info: CgroupInfo, dirs: list[Path]) -> None:
    for directory in dirs:
        raw = _read(directory / "memory.limit_in_bytes")
        try:
            limit = int(raw or "")
        except ValueError:
            continue
        if limit < _V1_UNLIMITED and (info.memory_limit is None or limit < info.memory_limit):
            info.memory_limit = limit
            info.memory_limit_source = str(directory / "memory.limit_in_bytes")
