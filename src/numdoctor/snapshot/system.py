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


def read_cgroup(proc_self: Path = Path("/proc/self"), root: Path = Path("/")) -> CgroupInfo:
    """The tightest CPU quota and memory limit on this process's cgroup path."""
    from dataclasses import asdict

    from numdoctor.core.cgroup import read_limits

    return CgroupInfo(**asdict(read_limits(proc_self, root)))
