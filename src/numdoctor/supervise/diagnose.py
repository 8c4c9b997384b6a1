"""From what the supervisor saw (processes, CPU, stacks, exit statuses) to findings.

Pure functions of plain data: the supervisor gathers `ProcView`s and stacks, these functions
judge. Codes are documented in numdoctor.rules.runtime (FORK001 in numdoctor.rules.fork).
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field
from typing import Any

from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import get
from numdoctor.snapshot.libraries import classify as classify_library
from numdoctor.supervise import isa
from numdoctor.supervise.classify import Exit, culprit, is_plumbing, package_of
from numdoctor.supervise.gpu import GpuReading
from numdoctor.supervise.kmsg import KernelEvent
from numdoctor.supervise.monitor import IDLE_CPU, IDLE_TREE_CPU, SPIN_CPU, Series
from numdoctor.supervise.stacks import Frame, ProcessStacks, ThreadStack

_SIGNAL_CODES = {
    signal.SIGSEGV: "SIG001", signal.SIGABRT: "SIG002", signal.SIGBUS: "SIG003",
    signal.SIGFPE: "SIG004", signal.SIGILL: "SIG005", signal.SIGKILL: "SIG006",
}
_FATAL_SIGNALS = {
    "Segmentation fault": signal.SIGSEGV, "Aborted": signal.SIGABRT, "Bus error": signal.SIGBUS,
    "Floating-point exception": signal.SIGFPE, "Floating point exception": signal.SIGFPE,
    "Illegal instruction": signal.SIGILL, "Killed": signal.SIGKILL,
}
_BLAS_CALL = re.compile(r"gemm|gemv|syrk|trsm|potrf|getrf|gesdd|gesvd|syev|blas|lapack|mkl_",
                        re.I)
_FRAMES_SHOWN = 8


@dataclass
class ProcView:
    """One process of the tree as the diagnosis sees it."""

    pid: int
    ppid: int
    command: str
    role: str = ""  # "main", "forked from 123", "child of 123"
    cpu: float | None = None  # CPUs used over the incident window
    state: str = ""
    python: bool = False
    forked_from: int | None = None
    threads_at_fork: int | None = None
    rss: int = 0
    peak_rss: int = 0
    memory: Series | None = None

    def label(self) -> str:
        return f"pid {self.pid} ({self.command}){f' [{self.role}]' if self.role else ''}"


def mib(n: float | None) -> str:
    if n is None:
        return "?"
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


def chain(frames: list[Frame], limit: int = _FRAMES_SHOWN) -> str:
    """'innermost ← caller ← …' with consecutive frames of one library folded."""
    labels: list[str] = []
    for frame in frames:
        label = frame.label()
        if labels and labels[-1] == label:
            continue
        labels.append(label)
    shown = labels[:limit]
    if len(labels) > limit:
        shown.append("…")
        shown.append(labels[-1])
    return " ← ".join(shown)


def main_thread(pid: int, stacks: ProcessStacks | None) -> ThreadStack | None:
    if stacks is None or not stacks.threads:
        return None
    for thread in stacks.threads:
        if thread.native_id == pid:
            return thread
    for thread in stacks.threads:
        if thread.name == "MainThread":
            return thread
    # faulthandler lists the newest thread first and the main thread last.
    return stacks.threads[-1]


def where_waiting(frames: list[Frame], interpreters: tuple[str, ...]) -> str:
    """'blocked in futex_wait (libc.so.6), inside GOMP_barrier (libgomp.so.1) [torch 2.13.0],
    called from <module> (x.py:9)'."""
    python_at = next((i for i, f in enumerate(frames) if f.kind == "python"), len(frames))
    natives = [f for f in frames[:python_at] if f.kind == "native" and f.file]
    parts = []
    if natives:
        parts.append(f"blocked in {natives[0].label()}")
        owned = next((f for f in natives if not is_plumbing(f.file, interpreters)), None)
        if owned is not None:
            owner = package_of(owned.file)
            text = f"inside {owned.label()}" + (f" [{owner}]" if owner else "")
            if owned is natives[0]:
                parts[0] = f"blocked {text}"
            else:
                parts.append(text)
    if python_at < len(frames):
        label = frames[python_at].label()
        parts.append(f"called from {label}" if parts else f"in {label}")
    return ", ".join(parts) or "(no frames)"


def _process_lines(views: list[ProcView], stacks: dict[int, ProcessStacks], window: float,
                   interpreters: tuple[str, ...]) -> list[str]:
    lines = []
    for view in views:
        cpu = "?" if view.cpu is None else f"{view.cpu:.0%} CPU"
        thread = main_thread(view.pid, stacks.get(view.pid))
        where = where_waiting(thread.frames, interpreters) if thread else "no stack available"
        lines.append(f"{view.label()}: {cpu} over the last {window:g} s, {where}")
    return lines


# -- fork deadlock ---------------------------------------------------------------------------

def _in_gnu_openmp(thread: ThreadStack) -> Frame | None:
    """The libgomp frame a thread waits in, when libgomp is among its innermost libraries."""
    libraries = []
    for frame in thread.frames:
        if frame.kind != "native" or not frame.file:
            if frame.kind == "python":
                break
            continue
        if frame.file not in libraries:
            libraries.append(frame.file)
        kind = classify_library(frame.file)
        if kind == ("openmp", "gnu") and len(libraries) <= 3:
            return frame
    return None


def fork_findings(views: list[ProcView], stacks: dict[int, ProcessStacks],
                  window: float) -> list[Finding]:
    """FORK001: a forked child idle in GNU OpenMP (typically under a BLAS call)."""
    found = []
    by_pid = {v.pid: v for v in views}
    for view in views:
        if view.forked_from is None or (view.cpu is not None and view.cpu >= IDLE_CPU):
            continue
        process = stacks.get(view.pid)
        if process is None:
            continue
        for thread in process.threads:
            gomp = _in_gnu_openmp(thread)
            if gomp is None:
                continue
            index = thread.frames.index(gomp)
            blas = next((f for f in thread.frames[index + 1:] if f.kind == "native"
                         and f.function and _BLAS_CALL.search(f.function)), None)
            python = next((f for f in thread.frames if f.kind == "python"), None)
            parent = by_pid.get(view.forked_from)
            threads = (f" while it had {view.threads_at_fork} threads"
                       if view.threads_at_fork else "")
            owner = package_of(gomp.file) or "not from a pip package"
            evidence = [
                f"{view.label()} was forked from pid {view.forked_from}"
                + (f" ({parent.command})" if parent else "") + threads,
                f"it used {0 if view.cpu is None else view.cpu:.0%} CPU over the last "
                f"{window:g} s and its thread {thread.native_id or thread.id} waits in "
                f"{os.path.basename(gomp.file)} ({gomp.file}) [{owner}]",
            ]
            if blas is not None:
                evidence.append(f"under a BLAS call: {blas.function} in "
                                f"{os.path.basename(blas.file)} [{package_of(blas.file)}]")
            if python is not None:
                evidence.append(f"called from {python.label()} ({python.file})")
            evidence.append(f"stack ({thread.source}): {chain(thread.frames)}")
            title = (f"Forked child pid {view.pid} is deadlocked in GNU OpenMP (libgomp)"
                     + (f" under {blas.function}" if blas is not None else ""))
            found.append(get("FORK001").finding(
                evidence, severity=Severity.ERROR, title=title, where=f"pid {view.pid}",
                why="fork() copied only the calling thread: libgomp in the child still "
                    "believes its thread pool exists and waits forever at a barrier for "
                    "threads that are not there (GCC bug 60035).",
                fix='Start workers with "spawn" or "forkserver" '
                    '(multiprocessing.set_start_method("spawn"), '
                    'DataLoader(multiprocessing_context="spawn")), or set OMP_NUM_THREADS=1 '
                    "in the parent so no pool starts before the fork.",
            ))
            break
    return found


# -- hangs -----------------------------------------------------------------------------------

def hang_findings(kind: str, *, window: float, silent_for: float, elapsed: float,
                  views: list[ProcView], stacks: dict[int, ProcessStacks],
                  tree_cpu: float | None, timeout: float | None,
                  interpreters: tuple[str, ...]) -> list[Finding]:
    """HANG001 (idle), HANG002 (spinning) or HANG003 (--timeout)."""
    lines = _process_lines(views, stacks, window, interpreters)
    main = next((v for v in views if v.role == "main"), views[0] if views else None)
    where = f"pid {main.pid}" if main else ""
    if kind == "hang":
        return [get("HANG001").finding(
            [f"no output and no heartbeat for {silent_for:.1f} s; the whole tree used "
             f"{(tree_cpu or 0):.1%} of one CPU over the last {window:g} s", *lines],
            title=f"No progress for {silent_for:.1f} s and no CPU use: the program is "
                  "deadlocked or waiting", where=where,
            why="Every thread of every process is blocked; nothing will change by waiting.",
        )]
    if kind == "spinning":
        spinners = [v for v in views if v.cpu is not None and v.cpu >= SPIN_CPU] or \
            sorted((v for v in views if v.cpu), key=lambda v: -(v.cpu or 0))[:1]
        found = []
        for view in spinners:
            process = stacks.get(view.pid)
            threads = process.threads if process else []
            busy = ([t for t in threads if t.state == "running"]
                    or [t for t in threads if t.owns_gil]
                    or ([main_thread(view.pid, process)] if process else []))
            evidence = [f"{view.label()} used {view.cpu:.0%} of a CPU for the last "
                        f"{window:g} s without output or heartbeat"]
            evidence += [f"busy thread {t.native_id or t.id}: {chain(t.frames)}"
                         for t in busy if t is not None]
            found.append(get("HANG002").finding(
                evidence, where=f"pid {view.pid}",
                title=f"pid {view.pid} spins at {view.cpu:.0%} CPU without progress for "
                      f"{silent_for:.1f} s",
                why="A thread is running without producing output: a busy loop, a livelock, "
                    "or a computation far longer than expected.",
            ))
        return found
    busiest = max((v.cpu or 0.0 for v in views), default=0.0)
    idle = tree_cpu is not None and tree_cpu < IDLE_TREE_CPU and busiest < IDLE_CPU
    state = "idle" if idle else "busy"
    return [get("HANG003").finding(
        [f"--timeout {timeout:g} s reached after {elapsed:.1f} s",
         f"last output or heartbeat {silent_for:.1f} s before; the tree used "
         f"{(tree_cpu or 0):.0%} of one CPU over the last {window:g} s ({state})", *lines],
        title=f"The program ran past --timeout {timeout:g} s ({state} at the end)", where=where,
    )]


# -- crashes ---------------------------------------------------------------------------------

@dataclass
class Death:
    """A process of the tree that died by a signal (or whose fatal dump we found)."""

    pid: int
    signal: int | None
    role: str = ""  # "main" or "worker of pid N"
    command: str = ""
    exit: Exit | None = None
    fatal: str = ""  # faulthandler's "Fatal Python error: <fatal>"
    threads: list[ThreadStack] = field(default_factory=list)
    kernel: list[KernelEvent] = field(default_factory=list)
    peak_rss: int = 0
    mapped: list[str] = field(default_factory=list)  # files mapped, for kernel log names


def faulting_thread(threads: list[ThreadStack]) -> ThreadStack | None:
    return next((t for t in threads if t.current), threads[0] if threads else None)


def _kernel_lines(death: Death, flags: set[str]) -> list[str]:
    lines = []
    for event in death.kernel:
        if event.kind == "oom-kill":
            continue
        text = f"kernel: {event.kind}"
        if event.address is not None:
            text += f" at address {event.address:#x}"
            if event.address < 4096:
                text += " (a NULL pointer dereference)"
        if event.library:
            text += f" in {event.library}"
            if event.file_offset is not None:
                text += f" at file offset {event.file_offset:#x}"
        lines.append(text)
        if event.kind == "invalid opcode":
            lines.extend(_illegal_instruction(event, death.mapped, flags))
    return lines


def _illegal_instruction(event: KernelEvent, mapped: list[str], flags: set[str]) -> list[str]:
    code = event.code
    path = next((p for p in mapped if os.path.basename(p) == event.library), "")
    if not code and path and event.file_offset is not None:
        code = isa.read_code(path, event.file_offset)
    instruction = isa.decode(code) if code else None
    if instruction is None:
        return []
    if instruction.deliberate:
        return [f"the faulting instruction is {instruction.family}: the program stopped "
                "itself on purpose; this is not a CPU mismatch"]
    lacking = [f for f in instruction.needs if f not in flags]
    line = f"the faulting instruction ({code[:8].hex(' ')}) is {instruction.family}"
    if instruction.needs:
        line += (f"; it needs {' or '.join(instruction.needs)}, which this CPU lacks"
                 if lacking and len(lacking) == len(instruction.needs)
                 else f"; this CPU has {', '.join(f for f in instruction.needs if f in flags)}"
                 " (the instruction may need a sub-extension or OS support it lacks)")
    return [line]


def crash_finding(death: Death, *, interpreters: tuple[str, ...], flags: set[str],
                  related: list[Finding]) -> Finding:
    number = death.signal
    code = _SIGNAL_CODES.get(number, "SIG007") if number else "SIG007"
    thread = faulting_thread(death.threads)
    frames = thread.frames if thread else []
    blamed = culprit(frames, interpreters) if frames else None
    what = death.exit.describe() if death.exit else (death.fatal or "crashed")
    evidence = [f"pid {death.pid} ({death.command}){f' [{death.role}]' if death.role else ''}"
                f" {what}"]
    if death.fatal:
        evidence.append(f"faulthandler: Fatal Python error: {death.fatal}")
    if thread is not None and frames:
        evidence.append(f"faulting thread {thread.id} (innermost first): {chain(frames)}")
    kernel_library = _kernel_library(death)
    if blamed is None and kernel_library:
        # No stack (a native program): the kernel's record names the faulting library.
        owner = package_of(kernel_library) or "not from a pip package"
        evidence.append(f"culprit: {os.path.basename(kernel_library)} [{owner}] (the library "
                        "that held the faulting instruction, from the kernel log)")
    if blamed is not None:
        evidence.append(f"culprit: {blamed.describe()}")
    evidence += _kernel_lines(death, flags)
    if number == signal.SIGILL:
        evidence.append(f"this CPU: {isa.level(flags)}; lacks "
                        f"{', '.join(isa.missing_above(flags)[:10]) or 'none of those checked'}")
    for finding in related:
        evidence.append(f"printed before the crash: {finding.title} (see {finding.code})")
    if not frames and number in _SIGNAL_CODES and number != signal.SIGKILL:
        evidence.append("no traceback: the process was not a Python process armed by "
                        "numdoctor, or it died before faulthandler could write")
    rule_ = get(code)
    title = rule_.title
    if blamed is not None:
        shown = (os.path.basename(blamed.library) if blamed.library
                 else blamed.frame.label())
        owner = f" [{blamed.package}]" if blamed.package else ""
        title = f"{_title_signal(number, death)} in {shown}{owner}"
    elif kernel_library:
        owner = package_of(kernel_library)
        title = (f"{_title_signal(number, death)} in {os.path.basename(kernel_library)}"
                 + (f" [{owner}]" if owner else ""))
    else:
        title = _title_signal(number, death)
    return rule_.finding(evidence, title=title, where=f"pid {death.pid}"
                         + (f" ({death.role})" if death.role else ""))


def _kernel_library(death: Death) -> str:
    """The full path of the library the kernel says held the faulting instruction."""
    for event in death.kernel:
        if event.library and event.kind != "oom-kill":
            path = next((p for p in death.mapped if os.path.basename(p) == event.library), "")
            return path or event.library
    return ""


def _title_signal(number: int | None, death: Death) -> str:
    from numdoctor.supervise.classify import SIGNAL_WORDS, signal_name

    if number is None:
        return f"Fatal Python error: {death.fatal}" if death.fatal else "The process crashed"
    words = SIGNAL_WORDS.get(number, "")
    who = "The program" if death.role == "main" else f"Process {death.pid}"
    return f"{who} was killed by {signal_name(number)}" + (f" ({words})" if words else "")


def signal_from_fatal(fatal: str) -> int | None:
    for words, number in _FATAL_SIGNALS.items():
        if fatal.startswith(words):
            return number
    return None


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
    return get("OOM001").finding(
        evidence, where=f"pid {death.pid}" + (f" ({death.role})" if death.role else ""),
        title=f"The OOM killer killed pid {death.pid} ({death.command})"
              + (f" at {mib(death.peak_rss)} resident" if death.peak_rss else ""),
    )


# -- memory growth ---------------------------------------------------------------------------

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
        found.append(get("MEM001").finding(
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


# -- GPUs ------------------------------------------------------------------------------------

def gpu_finding(reading: GpuReading | None, *, moment: str, tree_pids: set[int],
                host_idle: bool | None) -> Finding | None:
    if reading is None or not reading.available or not reading.gpus:
        return None
    evidence = []
    busy = False
    ours = False
    for gpu in reading.gpus:
        util = "?" if gpu.utilization is None else f"{gpu.utilization}%"
        line = (f"GPU {gpu.index} ({gpu.name}): {util} busy, memory {mib(gpu.memory_used)} of "
                f"{mib(gpu.memory_total)}")
        held = {pid: used for pid, used in gpu.processes.items() if pid in tree_pids}
        if held:
            ours = True
            line += "; held by " + ", ".join(f"pid {p} ({mib(b)})" for p, b in held.items())
        evidence.append(line)
        busy = busy or (gpu.utilization or 0) >= 50
    if moment == "hang" and host_idle is not None:
        if busy:
            title = "The GPU was busy while the host made no progress: waiting for the GPU"
        elif ours:
            title = "The GPU was idle while holding the program's memory: the host is stuck"
        else:
            title = "The GPU was idle when the program hung"
    else:
        title = f"GPU state at the {moment}"
    return get("GPU001").finding(evidence, title=title)


def merge(runtime: list[Finding], snapshot: list[Finding]) -> list[Finding]:
    """Snapshot-rule findings join the runtime ones; the same code is reported once."""
    from dataclasses import replace

    merged = list(runtime)
    for finding in snapshot:
        same = next((i for i, f in enumerate(merged) if f.code == finding.code), None)
        if same is None:
            merged.append(finding)
            continue
        current = merged[same]
        extra = tuple(e for e in finding.evidence if e not in current.evidence)
        merged[same] = replace(current, evidence=current.evidence + extra)
    return merged


def as_dict(views: list[ProcView]) -> list[dict[str, Any]]:
    return [{"pid": v.pid, "ppid": v.ppid, "command": v.command, "role": v.role,
             "cpu": v.cpu, "state": v.state, "python": v.python, "rss": v.rss,
             "peak_rss": v.peak_rss, "forked_from": v.forked_from} for v in views]
