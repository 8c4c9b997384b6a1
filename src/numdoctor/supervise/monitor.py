"""Watch the program's process tree: CPU, memory, OOM counters, GPUs, and progress.

A sample reads, for every process of the tree, its CPU time and resident memory through
psutil (a few tens of microseconds each). Finding new processes takes one pass over /proc,
so it runs at most once a second and less often when the machine has many processes; the
CPU time of processes that came and went between passes still counts, because the kernel
adds a reaped child's time to its parent's "children" time, which we include.

Progress is output (bytes relayed, or an inherited file that grew) or a heartbeat. Where no
output can be observed at all (stdout and stderr to /dev/null) written bytes (`wchar`) stand
in for output.
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from numdoctor.supervise import cgroup, launcher
from numdoctor.supervise.gpu import GpuReading, read_gpus

# The tree is idle over a window when no process used more than IDLE_CPU CPUs on average and
# all together used less than IDLE_TREE_CPU: a few percent is a poll loop or a heartbeat
# thread waiting, not work.
IDLE_CPU = 0.1
IDLE_TREE_CPU = 0.3
# A process at or above this many CPUs over the window counts as spinning.
SPIN_CPU = 0.5
# Samples kept per process for the memory series; older ones are thinned out by half.
_SERIES_POINTS = 600


@dataclass
class Series:
    """(time, value) points, thinned so that a long run keeps a bounded, even history."""

    points: list[tuple[float, float]] = field(default_factory=list)
    step: int = 1
    _count: int = 0

    def add(self, t: float, value: float) -> None:
        self._count += 1
        if self._count % self.step:
            return
        self.points.append((t, value))
        if len(self.points) >= _SERIES_POINTS:
            self.points = self.points[::2]
            self.step *= 2


@dataclass
class Proc:
    """What we know about one process of the tree."""

    pid: int
    ppid: int
    name: str = ""
    cmdline: list[str] = field(default_factory=list)
    exe: str = ""
    first_seen: float = 0.0  # monotonic
    last_seen: float = 0.0
    gone: bool = False
    cpu: float = 0.0  # seconds, own + reaped children, at the last sample
    rss: int = 0
    peak_rss: int = 0  # the kernel's high-water mark (VmHWM), or the largest sample
    threads: int = 0
    state: str = ""
    write_chars: int | None = None
    memory: Series = field(default_factory=Series)
    cpu_history: deque = field(default_factory=lambda: deque(maxlen=4096))
    handle: psutil.Process | None = None

    def cpu_since(self, since: float) -> float | None:
        """Average CPUs used since `since` (monotonic), from this process's own samples."""
        return _rate(self.cpu_history, since)


def _rate(history: deque | list, since: float) -> float | None:
    """Average CPUs between the last sample at or before `since` (or the oldest one kept)
    and the newest sample."""
    if len(history) < 2:
        return None
    end = history[-1]
    start = end
    for point in reversed(history):  # only the window is walked, not the whole history
        start = point
        if point[0] <= since:
            break
    if end[0] - start[0] <= 0:
        return None
    return max(0.0, (end[1] - start[1]) / (end[0] - start[0]))


@dataclass
class OomWatch:
    """oom_kill counters of every memory cgroup a process of the tree was seen in."""

    baselines: dict[Path, int] = field(default_factory=dict)
    latest: dict[Path, int] = field(default_factory=dict)
    groups: dict[Path, cgroup.MemoryCgroup] = field(default_factory=dict)
    global_baseline: int | None = None

    def watch(self, group: cgroup.MemoryCgroup | None) -> None:
        if group is None or group.path in self.groups:
            return
        count = group.oom_kills()
        if count is None:
            return
        self.groups[group.path] = group
        self.baselines[group.path] = self.latest[group.path] = count

    def refresh(self) -> None:
        for path, group in self.groups.items():
            count = group.oom_kills()
            if count is not None:
                self.latest[path] = count

    def rises(self) -> dict[Path, int]:
        self.refresh()
        return {p: self.latest[p] - self.baselines[p] for p in self.groups
                if self.latest[p] > self.baselines[p]}


class Monitor:
    def __init__(self, main_pid: int, *, exclude: Callable[[], Iterable[int]] = lambda: (),
                 gpu_interval: float = 5.0) -> None:
        self.main_pid = main_pid
        self.root = os.getpid()  # orphans re-parent to us (subreaper): walk from here
        self.exclude = exclude
        self.procs: dict[int, Proc] = {}
        self.tree_history: deque[tuple[float, float]] = deque(maxlen=8192)
        self.oom = OomWatch(global_baseline=cgroup.global_oom_kills())
        self.gpu: GpuReading | None = None
        self.gpu_time = 0.0
        self.gpu_interval = gpu_interval
        self._gpu_present = Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()
        self._last_scan = 0.0
        self._scan_every = 1.0
        self._reaped_cpu_base = _children_cpu()
        self.samples = 0
        self.sample_seconds = 0.0  # our own cost, for the report
        self.peak_tree_rss = 0
        self.peak_tree_rss_at = 0.0

    # -- discovery -------------------------------------------------------------------------
    def _discover(self, now: float) -> None:
        started = time.perf_counter()
        known_live = {p.pid for p in self.procs.values() if not p.gone}
        pids = launcher.descendants(self.root, exclude=self.exclude())
        for pid in pids:
            if pid not in self.procs or self.procs[pid].gone:
                self._add(pid, now)
        for pid in known_live - set(pids):
            self.procs[pid].gone = True
        cost = time.perf_counter() - started
        # Keep discovery under ~2 % of one CPU on machines with many processes.
        self._scan_every = max(1.0, 50 * cost)
        self._last_scan = now

    def _add(self, pid: int, now: float) -> None:
        try:
            handle = psutil.Process(pid)
            with handle.oneshot():
                proc = Proc(pid=pid, ppid=handle.ppid(), name=handle.name(), first_seen=now,
                            last_seen=now, handle=handle)
                try:
                    proc.cmdline = handle.cmdline()
                    proc.exe = handle.exe()
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    pass
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return
        self.procs[pid] = proc
        self.oom.watch(cgroup.memory_cgroup(pid))

    def track(self, pid: int) -> None:
        """Start watching a process at once (the main process, right after it starts)."""
        if pid not in self.procs:
            self._add(pid, time.monotonic())

    # -- sampling --------------------------------------------------------------------------
    def sample(self, now: float | None = None, *, io: bool = False) -> None:
        started = time.perf_counter()
        now = time.monotonic() if now is None else now
        if now - self._last_scan >= self._scan_every:
            self._discover(now)
        total_cpu = _children_cpu() - self._reaped_cpu_base  # orphans we reaped ourselves
        tree_rss = 0
        for proc in self.procs.values():
            if proc.gone or proc.handle is None:
                continue
            try:
                with proc.handle.oneshot():
                    times = proc.handle.cpu_times()
                    memory = proc.handle.memory_info()
                    proc.state = proc.handle.status()
                    proc.threads = proc.handle.num_threads()
                    if io:
                        proc.write_chars = proc.handle.io_counters().write_chars
            except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                proc.gone = True
                continue
            if proc.state == psutil.STATUS_ZOMBIE:
                proc.gone = True
                continue
            proc.cpu = times.user + times.system + times.children_user + times.children_system
            proc.rss = memory.rss
            proc.peak_rss = max(proc.peak_rss, memory.rss, _hwm(proc.pid))
            proc.last_seen = now
            proc.memory.add(now, memory.rss)
            proc.cpu_history.append((now, proc.cpu))
            total_cpu += proc.cpu
            tree_rss += memory.rss
        self.tree_history.append((now, total_cpu))
        if tree_rss > self.peak_tree_rss:
            self.peak_tree_rss, self.peak_tree_rss_at = tree_rss, now
        if self._gpu_present and now - self.gpu_time >= self.gpu_interval:
            self.read_gpu(now)
        self.samples += 1
        self.sample_seconds += time.perf_counter() - started

    def read_gpu(self, now: float | None = None) -> GpuReading:
        self.gpu = read_gpus()
        self.gpu_time = time.monotonic() if now is None else now
        return self.gpu

    def gpu_reading(self) -> GpuReading:
        """A fresh GPU reading where a GPU driver is present, else the reason there is none."""
        if not self._gpu_present:
            reading = read_gpus()  # says precisely why (library missing, no device...)
            self.gpu = reading
            return reading
        return self.read_gpu()

    # -- questions -------------------------------------------------------------------------
    def tree_cpu_since(self, since: float) -> float | None:
        return _rate(self.tree_history, since)

    def idle_since(self, since: float) -> bool | None:
        """True when the tree did no work since `since` (None: not enough samples yet)."""
        tree = self.tree_cpu_since(since)
        if tree is None:
            return None
        busiest = max((p.cpu_since(since) or 0.0 for p in self.procs.values()
                       if p.last_seen >= since), default=0.0)
        return tree < IDLE_TREE_CPU and busiest < IDLE_CPU

    def live(self) -> list[Proc]:
        return [p for p in self.procs.values() if not p.gone]

    def write_chars(self) -> int:
        return sum(p.write_chars or 0 for p in self.live())

    def known(self, pid: int) -> Proc | None:
        return self.procs.get(pid)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hwm(pid: int) -> int:
    """Peak resident memory the kernel recorded for `pid` (VmHWM), in bytes."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
