"""Memory: the OOM killer (OOM001) and steady growth (MEM001)."""

from __future__ import annotations

from numdoctor.core.facts import Death, ProcView
from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Stage, declare
from numdoctor.rules.run._text import mib

OOM001 = declare(
    "OOM001", "The kernel's OOM killer killed a process", Severity.ERROR,
    """
    A process of the program died from SIGKILL and the kernel's out-of-memory killer was
    responsible: the `oom_kill` counter of its memory cgroup (`memory.events` on cgroup v2,
    `memory.oom_control` on v1) rose during the run, or the kernel log recorded the kill.
    The evidence gives the process's peak resident memory, the cgroup's limit and peak, and
    the largest processes of the tree.

    **Why it matters.** The program did not crash: it needed more memory than the container
    or machine allows. Nothing is printed by the program itself, which makes this look like a
    mysterious "Killed".

    **Fix.** Reduce the peak: smaller batches, fewer DataLoader workers (each holds a copy of
    what it touches), `float32` instead of `float64`, releasing references to large arrays;
    or raise the memory limit. If the memory grew steadily (MEM001), look for a leak first.
    """,
    Stage.RUN,
)

MEM001 = declare(
    "MEM001", "Resident memory grew steadily: leak suspect", Severity.WARNING,
    """
    The resident memory of a process grew steadily for most of the run (a straight-line trend
    over at least 10 seconds and 10 samples, at least 64 MiB and 25 % above where the trend
    started, with no sizeable drop). The evidence gives the growth rate and the process.

    **Why it matters.** A program that keeps growing eventually meets its memory limit (see
    OOM001). Typical causes in numerical code: keeping tensors that hold an autograd graph
    (`losses.append(loss)` instead of `loss.item()`), caches without a bound, appending to a
    list every step, and DataLoader workers touching Python objects of a large dataset
    (copy-on-write turns shared pages into private ones).

    **Fix.** Watch the named process with `tracemalloc` (Python allocations) or
    `memray`, and check what the loop keeps a reference to. Growth that levels off later is
    a cache warming up, not a leak.
    """,
    Stage.RUN,
)


def oom_finding(death: Death, *, rises: dict[str, int], limit: int | None,
                cgroup_peak: int | None, largest: list[ProcView],
                global_rise: int) -> Finding:
    evidence = [f"pid {death.pid} ({death.command}) was killed by SIGKILL"]
    for event in death.kernel:
        if event.kind == "oom-kill":
            evidence.append(f"kernel: {event.message.strip()}")
    for path, rise in rises.items():
        evidence.append(f"memory cgroup {path}: oom_kill counter rose by {rise}")
    if global_rise and not rises:
        evidence.append(f"/proc/vmstat oom_kill rose by {global_rise} during the run")
    if death.peak_rss:
        evidence.append(f"peak resident memory of pid {death.pid}: {mib(death.peak_rss)}")
    if limit is not None:
        evidence.append(f"cgroup memory limit: {mib(limit)}"
                        + (f"; cgroup peak usage: {mib(cgroup_peak)}" if cgroup_peak else ""))
    for view in largest[:3]:
        evidence.append(f"{view.label()}: peak {mib(view.peak_rss)}")
    return OOM001.finding(
        evidence, where=f"pid {death.pid}" + (f" ({death.role})" if death.role else ""),
        title=f"The OOM killer killed pid {death.pid} ({death.command})"
              + (f" at {mib(death.peak_rss)} resident" if death.peak_rss else ""),
    )


LEAK_MIN_SECONDS = 10.0
LEAK_MIN_POINTS = 10
LEAK_MIN_BYTES = 64 * 2**20
LEAK_MIN_RATIO = 0.25


def leak_findings(views: list[ProcView]) -> list[Finding]:
    found = []
    for view in views:
        if view.memory is None:
            continue
        trend = steady_growth(view.memory.points)
        if trend is None:
            continue
        start, end, seconds, r2 = trend
        rate = (end - start) / seconds * 60
        found.append(MEM001.finding(
            [f"{view.label()}: resident memory grew from {mib(start)} to {mib(end)} over "
             f"{seconds:.0f} s ({mib(rate)}/min, linear fit R² = {r2:.2f})",
             f"peak resident memory: {mib(view.peak_rss)}"],
            where=f"pid {view.pid}",
            title=f"pid {view.pid} grew steadily by {mib(rate)}/min: leak suspect",
        ))
    return found


def steady_growth(points: list[tuple[float, float]]) -> tuple[float, float, float, float] | None:
    """(fitted start, fitted end, seconds, R²) of a steady rise, or None.

    The first fifth of the points (start-up: imports, first allocations) and the last two
    (exit) are left out.
    """
    # The last samples are left out too: a process that exits frees its memory on the way.
    points = points[len(points) // 5:-2]
    if len(points) < LEAK_MIN_POINTS or points[-1][0] - points[0][0] < LEAK_MIN_SECONDS:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    var_v = sum((v - mean_v) ** 2 for _, v in points)
    if var_t <= 0 or var_v <= 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    slope = cov / var_t
    r2 = cov * cov / (var_t * var_v)
    seconds = points[-1][0] - points[0][0]
    start = mean_v + slope * (points[0][0] - mean_t)
    end = mean_v + slope * (points[-1][0] - mean_t)
    growth = end - start
    if slope <= 0 or r2 < 0.8 or growth < LEAK_MIN_BYTES or growth < LEAK_MIN_RATIO * start:
        return None
    # A sizeable drop means memory is being released: a cache or a phase, not a leak.
    peak = 0.0
    for _, value in points:
        peak = max(peak, value)
        if peak - value > 0.2 * growth:
            return None
    return start, end, seconds, r2
