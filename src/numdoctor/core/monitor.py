"""Watch the program's process tree: CPU, memory, OOM counters, GPUs, and progress.

A sample reads one file per process, /proc/<pid>/stat (state, CPU times, threads, resident
memory), plus VmHWM from /proc/<pid>/status: tens of microseconds each. That is what psutil
reads too; going to the file directly spares the supervisor psutil's import and object
overhead, which matter for the 3 % overhead goal on a program that keeps every CPU busy.
Finding new processes takes one pass over /proc, so it runs at most once a second and less
often when the machine has many processes; the CPU time of processes that came and went
between passes still counts, because the kernel adds a reaped child's time to its parent's
"children" time, which we include.

Progress is output (bytes relayed, or an inherited file that grew) or a heartbeat. Where no
output can be observed at all (stdout and stderr to /dev/null) written bytes (`wchar`) stand
in for output.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from numdoctor.core import cgroup
from numdoctor.core.gpu import GpuReading, read_gpus
from numdoctor.core.procfs import read_text, stat_fields, state_word
from numdoctor.core.tree import descendants

# The tree is idle over a window when no process used more than IDLE_CPU CPUs on average and
# all together used less than IDLE_TREE_CPU: a few percent is a poll loop or a heartbeat
# thread waiting, not work.
IDLE_CPU = 0.1
IDLE_TREE_CPU = 0.3
# A process at or above this many CPUs over the window counts as spinning.
SPIN_CPU = 0.5
# Samples kept per process for the memory series; older ones are thinned out by half.
_SERIES_POINTS = 600
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat a sample needs."""

    state: str
    ppid: int
    cpu: float  # seconds: user + system, own and of reaped children
    threads: int
    rss: int  # bytes
    start: int  # clock ticks after boot: tells a reused pid from the process we knew


def read_stat(pid: int) -> Stat | None:
    fields = stat_fields(pid)
    if not fields or len(fields) < 22:
        return None
    try:
        ticks = sum(int(f) for f in fields[11:15])
        return Stat(state=state_word(fields[0]), ppid=int(fields[1]),
                    cpu=ticks / _TICK, threads=int(fields[17]), rss=int(fields[21]) * _PAGE,
                    start=int(fields[19]))
    except ValueError:
        return None


def _write_chars(pid: int) -> int | None:
    for line in read_text(f"/proc/{pid}/io").splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return None


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
    cpu_history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    start: int = 0  # start time in clock ticks (pid reuse)

    def cpu_since(self, since: float) -> float | None:
        """Average CPUs used since `since` (monotonic), from this process's own samples."""
        return _rate(self.cpu_history, since)


def _rate(history: deque[tuple[float, float]] | list[tuple[float, float]],
          since: float) -> float | None:
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
    return max(0.0, float(end[1] - start[1]) / (end[0] - start[0]))


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

    def global_rise(self) -> int:
        """How many OOM kills the whole system counted since we started watching."""
        now = cgroup.global_oom_kills()
        if now is None or self.global_baseline is None:
            return 0
        return now - self.global_baseline

    def rises(self) -> dict[Path, int]:
        self.refresh()
        return {p: self.latest[p] - self.baselines[p] for p in self.groups
                if self.latest[p] > self.baselines[p]}


class Monitor:
    def __init__(self, main_pid: int, *, root: int | None = None,
                 exclude: Callable[[], Iterable[int]] = lambda: (),
                 gpu_interval: float = 5.0) -> None:
        """`root`: the tree is this process and its descendants. None: the tree is every
        descendant of ours (we are its subreaper, so its orphans re-parent to us), and the CPU
        time of the orphans we reap counts too."""
        self.main_pid = main_pid
        self.subreaper = root is None
        self.root = os.getpid() if root is None else root
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
        self._reaped_cpu_base = _children_cpu() if self.subreaper else 0.0
        self._ours = 0.0  # CPU seconds of the tree's that numdoctor caused (see own_work)
        self.samples = 0
        self.wrote = False  # set by sample(io=True) when some process's wchar grew
        self.sample_seconds = 0.0  # our own cost, for the report
        self.peak_tree_rss = 0
        self.peak_tree_rss_at = 0.0

    # -- discovery -------------------------------------------------------------------------
    def discover(self, now: float) -> int:
        """Find the tree's processes now (sampling does it at most once a second); returns
        how many were new."""
        started = time.perf_counter()
        known_live = {p.pid for p in self.procs.values() if not p.gone}
        pids = descendants(self.root, exclude=self.exclude())
        if not self.subreaper:
            pids.insert(0, self.root)
        new = 0
        for pid in pids:
            if pid not in self.procs or self.procs[pid].gone:
                self._add(pid, now)
                new += 1
        for pid in known_live - set(pids):
            self.procs[pid].gone = True
        cost = time.perf_counter() - started
        # Keep discovery under ~2 % of one CPU on machines with many processes.
        self._scan_every = max(1.0, 50 * cost)
        self._last_scan = now
        return new

    def _add(self, pid: int, now: float) -> None:
        stat = read_stat(pid)
        if stat is None:
            return
        proc = Proc(pid=pid, ppid=stat.ppid, name=read_text(f"/proc/{pid}/comm").strip(),
                    first_seen=now, last_seen=now, start=stat.start)
        raw = read_text(f"/proc/{pid}/cmdline")
        proc.cmdline = raw.split("\0")[:-1] if raw else []
        try:
            proc.exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            pass
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
            self.discover(now)
        # orphans we reaped ourselves
        total_cpu = _children_cpu() - self._reaped_cpu_base if self.subreaper else 0.0
        tree_rss = 0
        for proc in self.procs.values():
            if proc.gone:
                continue
            stat = read_stat(proc.pid)
            if stat is None or stat.start != proc.start or stat.state in ("zombie", "dead"):
                proc.gone = True
                continue
            proc.state, proc.threads = stat.state, stat.threads
            proc.cpu, proc.rss = stat.cpu, stat.rss
            if io:
                written = _write_chars(proc.pid)
                if written is not None and proc.write_chars is not None and \
                        written > proc.write_chars:
                    self.wrote = True
                proc.write_chars = written
            proc.peak_rss = max(proc.peak_rss, stat.rss, _hwm(proc.pid))
            proc.last_seen = now
            proc.memory.add(now, stat.rss)
            proc.cpu_history.append((now, proc.cpu))
            total_cpu += proc.cpu
            tree_rss += stat.rss
        self.tree_history.append((now, total_cpu - self._ours))
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

    @contextlib.contextmanager
    def own_work(self) -> Iterator[None]:
        """What runs inside is numdoctor's, not the program's: a look at the stacks. The CPU
        of its tools (our children, counted with the tree's orphans when we are the
        subreaper) and what the tree spent answering it (ptrace stops, a faulthandler dump)
        must not make an idle tree look busy: the look would wake the very tree it found
        idle, and a proof would never be confirmed."""
        self.sample()
        before = self.tree_history[-1][1]
        try:
            yield
        finally:
            self.sample()
            at, after = self.tree_history[-1]
            self._ours += max(0.0, after - before)
            self.tree_history[-1] = (at, before)

    def idle_for(self, now: float) -> float | None:
        """Seconds the tree has been idle up to `now` (its CPU use below the idle threshold
        from that point on), or None when it is not idle now or the samples cannot tell."""
        history = self.tree_history
        if len(history) < 2:
            return None
        end = history[-1]
        since: float | None = None
        for point in reversed(history):
            if point is end:
                continue
            elapsed = end[0] - point[0]
            if elapsed <= 0:
                continue
            if (end[1] - point[1]) / elapsed >= IDLE_TREE_CPU:
                break
            since = point[0]
        if since is None:
            return None
        return max(0.0, now - since)

    def live(self) -> list[Proc]:
        return [p for p in self.procs.values() if not p.gone]

    def wrote_since_last_call(self) -> bool:
        """True when a process of the tree wrote bytes (anywhere) since the last call; only
        processes seen before count, so a newly found process is not mistaken for output."""
        wrote, self.wrote = self.wrote, False
        return wrote

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
