"""One process tree under supervision: what `numdoctor run` and the pytest plugin share.

A `Watch` owns the tree's facts while it runs (its run directory, the samples of its
processes, the kernel log, the orphans it reaped) and turns them into the facts a diagnosis
needs at the two moments that matter:

- `incident()`: the tree is stuck (hung, spinning, past a timeout, interrupted): the process
  table, every thread's stacks (the dump ladder), then the diagnoses of numdoctor.rules.run;
- `ending()`: the main process ended on its own: who died of what (wait statuses, fatal
  dumps, the kernel's OOM records), then the same diagnoses.

It never decides *when* something is wrong: the front end's loop does (`run` watches output
and heartbeats, the plugin watches test reports).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from numdoctor.core import isa, tree
from numdoctor.core.facts import Death, ProcView
from numdoctor.core.kmsg import KernelEvent, KernelLog
from numdoctor.core.monitor import Monitor
from numdoctor.core.procfs import alive, command_line
from numdoctor.core.rundir import INJECT_DIR, RunDir
from numdoctor.core.status import Exit, Status, from_wait_status, status_of
from numdoctor.findings import Finding, merge_findings
from numdoctor.redact import redact_text
from numdoctor.rules.messages import Context, Hit, shell_deaths
from numdoctor.rules.run import crash, gpu, memory
from numdoctor.supervise.packages import add_site_dirs, annotate, package_of

# The dump ladder (py-spy, gdb, faulthandler parsers, a thread pool) is imported by the first
# dump: a program that ends on its own never needs it.
if TYPE_CHECKING:
    from numdoctor.core.stacks.model import Frame, ProcessStacks
    from numdoctor.core.waits.collect import ThreadCpu
    from numdoctor.core.waits.model import Fate, TreeFacts
    from numdoctor.rules.hangs import HangDiagnosis

_PYTHON_EXE = re.compile(r"^(?:python|pypy)[\d.]*[dmu]*$")


@dataclass
class Examination:
    """The tree at one moment, and who waits for whom in it."""

    views: list[ProcView]
    stacks: dict[int, ProcessStacks]
    facts: TreeFacts
    diagnosis: HangDiagnosis
    interpreters: tuple[str, ...]
    taken: float  # monotonic


@dataclass
class Incident:
    """What was found when the tree was stopped."""

    status: Status
    views: list[ProcView]
    stacks: dict[int, ProcessStacks]
    findings: list[Finding]
    window: float
    detected: float  # monotonic
    diagnosis: HangDiagnosis | None = None


@dataclass
class Ending:
    """How the tree ended on its own."""

    status: Status
    main_exit: Exit
    views: list[ProcView]
    deaths: list[Death]
    findings: list[Finding]
    crash_dumps: dict[int, str] = field(default_factory=dict)  # pid -> faulthandler text
    observed: bool = False  # something beyond the exit status was seen (a message, a death)


class Watch:
    def __init__(self, main_pid: int, run_dir: RunDir, *, started: float,
                 subreaper: bool, command: list[str] | None = None,
                 helpers: set[int] | None = None, main_role: str = "main",
                 kernel: KernelLog | None = None,
                 hide: Callable[[Frame], bool] | None = None,
                 on_stacks: Callable[[dict[int, ProcessStacks]], object] | None = None
                 ) -> None:
        """`subreaper`: this process adopted the tree's orphans (`numdoctor run`): the tree is
        every descendant of ours. Otherwise the tree is `main_pid` and its descendants (a
        pytest worker is the subreaper of its own tests). `hide`: frames that say nothing
        about the program (the pytest machinery around a test), left out of stacks and
        diagnoses alike; `on_stacks` sees every dump before they are left out."""
        self.main_pid = main_pid
        self.run_dir = run_dir
        self.started = started
        self.subreaper = subreaper
        self.command = command or []
        self.main_role = main_role
        self.helpers: set[int] = helpers if helpers is not None else set()
        self.monitor = Monitor(main_pid, root=None if subreaper else main_pid,
                               exclude=lambda: self.helpers)
        self.monitor.track(main_pid)
        self.kernel = kernel
        self.hide = _injected if hide is None else (lambda f: _injected(f) or hide(f))
        self.on_stacks = on_stacks
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.mapped: set[str] = set()  # libraries seen mapped, for the kernel log's names
        self.reaped: dict[int, tuple[int, float]] = {}  # orphans we reaped: (status, when)
        self.thread_cpu: ThreadCpu | None = None  # per-thread CPU readings, between looks

    # -- while it runs -----------------------------------------------------------------------
    def reap(self) -> int | None:
        """The main process's wait status once it has exited (never blocks)."""
        statuses = tree.reap(None if self.subreaper else [self.main_pid])
        now = time.monotonic()
        for pid, status in statuses.items():
            if pid != self.main_pid:
                self.reaped[pid] = (status, now)
        return statuses.get(self.main_pid)

    def infos(self) -> dict[int, dict]:
        infos = self.run_dir.infos()
        for info in infos.values():
            add_site_dirs([str(d) for d in info.get("site_dirs", ())])
        return infos

    def interpreters(self, infos: dict[int, dict]) -> tuple[str, ...]:
        paths = {os.path.realpath(sys.executable)}
        for info in infos.values():
            if info.get("executable"):
                paths.add(os.path.realpath(str(info["executable"])))
        return tuple(sorted(paths))

    def views(self, infos: dict[int, dict], window: float, now: float) -> list[ProcView]:
        """The process table: every live process of the tree (and the main one, always)."""
        views = []
        me = os.getpid()
        for proc in sorted(self.monitor.procs.values(), key=lambda p: (p.first_seen, p.pid)):
            if proc.gone and proc.pid != self.main_pid:
                continue
            info = infos.get(proc.pid, {})
            forked = info.get("forked_from")
            if forked is None and proc.pid != self.main_pid:
                parent = self.monitor.known(proc.ppid)
                if parent is not None and parent.exe and parent.exe == proc.exe and \
                        parent.cmdline == proc.cmdline and proc.pid not in infos:
                    forked = proc.ppid  # same program, no exec: a fork of a native program
            if proc.pid == self.main_pid:
                role = self.main_role
            elif forked:
                role = f"forked from {forked}"
            elif proc.ppid == me:
                role = "re-parented to numdoctor"
            else:
                role = f"child of {proc.ppid}"
            # The command line as the process itself reports it: a launcher script that
            # exec'd python shows up as python, not as the launcher.
            argv = info.get("argv") or command_line(proc.pid) or proc.cmdline
            command = shlex.join(argv) if argv else proc.name
            command = command.replace("\n", "\\n")
            views.append(ProcView(  # masked before the cut: half a secret has no shape
                pid=proc.pid, ppid=proc.ppid, command=redact_text(command)[:200], role=role,
                cpu=proc.cpu_since(now - window), state=proc.state,
                python=proc.pid in infos or bool(_PYTHON_EXE.match(os.path.basename(proc.exe)
                                                                   or proc.name)),
                forked_from=forked, threads_at_fork=info.get("threads_at_fork"),
                rss=proc.rss, peak_rss=proc.peak_rss, memory=proc.memory))
        return views

    def dump(self, views: list[ProcView], infos: dict[int, dict], *,
             quick: bool = False, tool_timeout: float = 5.0,
             gdb: bool = True) -> dict[int, ProcessStacks]:
        """Every thread's stacks, Python and native, with the package of each frame."""
        from numdoctor.core.stacks.ladder import Dumper, Target

        targets = [Target(v.pid, python=v.python, dumpable=bool(infos.get(v.pid, {})
                                                                .get("dumps")))
                   for v in views if alive(v.pid)]
        dumper = Dumper(self.run_dir.path, self.run_dir.dump_signal, helpers=self.helpers)
        started = time.monotonic()
        stacks = dumper.dump(targets, tool_timeout=1.5 if quick else tool_timeout,
                             faulthandler_wait=0.5 if quick else 1.0, gdb=gdb)
        if self.on_stacks is not None:
            self.on_stacks(stacks)
        for process in stacks.values():
            for thread in process.threads:
                if self.hide is not None:
                    thread.frames = _without(thread.frames, self.hide)
                annotate(thread.frames)
        self.timings["dump"] = time.monotonic() - started
        self.timings.update({f"dump_{k}": v for k, v in dumper.seconds.items()})
        self._note_missing_native(stacks)
        return stacks

    def _note_missing_native(self, stacks: dict[int, ProcessStacks]) -> None:
        """Say once, for the whole report, why native frames are missing, and the fix."""
        from numdoctor.core.stacks.pyspy import PTRACE_FIX

        if not stacks or any(s.native for s in stacks.values()):
            return
        reasons = sorted({n for s in stacks.values() for n in s.notes
                          if "native" in n or "gdb" in n or "py-spy" in n})
        for process in stacks.values():  # said once, for the whole report
            process.notes = [n for n in process.notes if n not in reasons]
        reasons = [r.removeprefix("native frames unavailable: ") for r in reasons]
        denied = any("ptrace was denied" in n for n in reasons)
        self.notes.append("native stacks were not available"
                          + (": " + "; ".join(reasons) if reasons else "")
                          + (f". Fix: {PTRACE_FIX}" if denied else ""))

    def kill(self) -> tree.KillResult:
        """Freeze and kill the whole tree; the main process's status is kept."""
        if self.subreaper:
            killed = tree.kill_tree(os.getpid(), session=self.main_pid, exclude=self.helpers,
                                    reap_all=True)
        else:
            killed = tree.kill_tree(self.main_pid, session=self.main_pid, include_root=True,
                                    exclude=self.helpers)
        return killed

    def leftovers(self) -> tree.KillResult:
        """Processes the program left running: give them a moment, then terminate them."""
        root = os.getpid() if self.subreaper else self.main_pid
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self.reap()
            if not [p for p in tree.descendants(root, self.helpers) if alive(p)]:
                return tree.KillResult()
            time.sleep(0.05)
        return tree.terminate_tree(root, exclude=self.helpers, reap_all=self.subreaper)

    def message_context(self, openmp_libraries: list[str] | None = None) -> Context:
        return Context(openmp_libraries=openmp_libraries or [], cpu_flags=isa.cpu_flags(),
                       main_pid=self.main_pid, owner=package_of)

    # -- the tree is stuck -------------------------------------------------------------------
    def examine(self, window: float, *, quick: bool = False,
                confirmed: bool = False, look: bool = False) -> Examination:
        """Who waits for whom now: the process table, every thread's stacks and the kernel's
        view of each wait, and the hang analysis of them (numdoctor.rules.hangs). `look`: the
        sentinel's look at an idle tree that may well be healthy, kept cheap (no gdb)."""
        now = time.monotonic()
        self.monitor.discover(now)
        with self.monitor.own_work():
            return self._examine(window, now, quick=quick, confirmed=confirmed, look=look)

    def _examine(self, window: float, now: float, *, quick: bool,
                 confirmed: bool, look: bool) -> Examination:
        from numdoctor.core.waits.collect import ThreadCpu, collect
        from numdoctor.rules.hangs import analyse

        infos = self.infos()
        views = self.views(infos, window, now)
        taken: dict[int, ProcessStacks] = {}

        def stacks() -> dict[int, ProcessStacks]:
            # Read by `collect` after the kernel's view of each thread: a dump tool stops the
            # process, and the wait it interrupts no longer says how long it had left.
            taken.update(self.dump(views, infos, quick=quick, gdb=not look))
            return taken

        started = time.monotonic()
        idle_for = self.monitor.idle_for(now)
        # Per-thread CPU tells the busy thread from the waiting ones: it needs a window long
        # enough to count ticks, unless the whole tree has been idle for half a second already
        # (then no thread is busy, and a short window only confirms it). No window is waited
        # for when the tree has been idle since the last look: its reading is the start.
        window = 0.1 if quick or (idle_for is not None and idle_for >= 0.5) else 0.3
        if self.thread_cpu is None:
            self.thread_cpu = ThreadCpu()
        facts = collect([v.pid for v in views], main_pid=self.main_pid, stacks=stacks,
                        roles={v.pid: v.role for v in views}, fates=self.fates(),
                        started=self.started, window=window,
                        run_dir=self.run_dir.path, idle_for=idle_for,
                        kernel=self.kernel.poll() if self.kernel is not None else (),
                        confirmed=confirmed, cpu=self.thread_cpu)
        diagnosis = analyse(facts)
        self.timings["examine"] = self.timings.get("examine", 0.0) + \
            time.monotonic() - started
        return Examination(views, taken, facts, diagnosis, self.interpreters(infos), now)

    def fates(self) -> list[Fate]:
        """The orphans this process reaped, as the hang analysis sees them (the run
        directory's records of what the tree's own processes reaped are read with them)."""
        from numdoctor.core.waits.model import Fate

        found = []
        for pid, (status, when) in self.reaped.items():
            ended = from_wait_status(status)
            proc = self.monitor.known(pid)
            found.append(Fate(pid=pid, ppid=proc.ppid if proc else None,
                              command=" ".join(proc.cmdline) if proc else "",
                              ended=round(when - self.started, 3),
                              exit_code=None if ended.signal else ended.code,
                              signal=ended.signal, source="numdoctor reaped it"))
        return found

    def incident(self, status: Status, *, window: float, silent_for: float, elapsed: float,
                 timeout: float | None, messages: list[Finding],
                 examination: Examination | None = None) -> Incident:
        """Dump every process, then diagnose. The caller kills the tree afterwards.
        `examination`: one already made (a proven deadlock), reused as it is."""
        detected = time.monotonic()
        reading = self.monitor.gpu_reading()
        seen = examination or self.examine(window, quick=status is Status.INTERRUPTED)
        tree_cpu = self.monitor.tree_cpu_since(detected - window)
        found: list[Finding] = []
        if status is Status.TIMEOUT and timeout is not None:
            from numdoctor.rules.hangs.timeout import timeout_finding

            found.append(timeout_finding(
                timeout=timeout, elapsed=elapsed, silent_for=silent_for, window=window,
                tree_cpu=tree_cpu, views=seen.views, stacks=seen.stacks,
                interpreters=seen.interpreters))
        diagnosed = list(seen.diagnosis.findings)
        if diagnosed and status in (Status.HANG, Status.SPINNING):
            first = diagnosed[0]
            cpu = f"{(tree_cpu or 0):.0%}"
            context = (f"no output and no heartbeat for {silent_for:.1f} s; the whole tree "
                       f"used {cpu} of one CPU over the last {window:g} s")
            diagnosed[0] = replace(first, evidence=(context, *first.evidence))
        found += diagnosed
        found += messages
        found += memory.leak_findings(seen.views)
        gpu_finding = gpu.gpu_finding(reading, moment="hang",
                                      tree_pids={v.pid for v in seen.views},
                                      host_idle=self.monitor.idle_since(detected - window))
        if gpu_finding is not None:
            found.append(gpu_finding)
        return Incident(status, seen.views, seen.stacks, found, window, detected,
                        diagnosis=seen.diagnosis)

    # -- the tree ended on its own -----------------------------------------------------------
    def ending(self, main_status: int, *, hits: dict[str, list[Hit]],
               messages: list[Finding], snapshot_findings: list[Finding] | None = None,
               kernel_events: list[KernelEvent] | None = None) -> Ending:
        ended = time.monotonic()
        main_exit = from_wait_status(main_status)
        self.monitor.sample(ended)
        infos = self.infos()
        window = min(10.0, max(1.0, ended - self.started))
        views = self.views(infos, window, ended)
        interpreters = self.interpreters(infos)
        flags = isa.cpu_flags()
        by_pid = {v.pid: v for v in views}
        events = kernel_events if kernel_events is not None else (
            self.kernel.poll() if self.kernel is not None else [])
        dumps = self.run_dir.fatal_dumps()
        deaths: list[Death] = []
        if main_exit.signal is not None:
            deaths.append(self._death(self.main_pid, main_exit.signal, self.main_role,
                                      main_exit, dumps, events, by_pid))
        for pid in sorted(dumps):
            if pid == self.main_pid:
                continue
            deaths.append(self._death(pid, crash.signal_from_fatal(dumps[pid][0]),
                                      self._role(pid, infos), None, dumps, events, by_pid))
        covered = {d.pid for d in deaths}
        for pid, what, _line in shell_deaths(hits):
            if pid not in covered and pid in by_pid:
                deaths.append(self._death(pid, crash.signal_from_fatal(what),
                                          by_pid[pid].role, None, dumps, events, by_pid))
                covered.add(pid)
        for event in events:
            if event.kind == "oom-kill" and event.pid in by_pid and event.pid not in covered:
                deaths.append(self._death(event.pid, signal.SIGKILL, by_pid[event.pid].role,
                                          None, dumps, events, by_pid))
                covered.add(event.pid)

        rises = {str(k): v for k, v in self.monitor.oom.rises().items()}
        global_rise = self.monitor.oom.global_rise()
        found: list[Finding] = []
        oom_main = False
        limit = peak = None
        groups = list(self.monitor.oom.groups.values())
        if groups:
            limit, peak = groups[0].limit(), groups[0].peak()
        for death in deaths:
            if death.signal == signal.SIGKILL and (
                    rises or global_rise or any(e.kind == "oom-kill" for e in death.kernel)):
                largest = sorted(views, key=lambda v: -v.peak_rss)
                found.append(memory.oom_finding(death, rises=rises, limit=limit,
                                                cgroup_peak=peak, largest=largest,
                                                global_rise=global_rise))
                oom_main = oom_main or death.pid == self.main_pid
                continue
            related = messages if death.pid == self.main_pid else []
            found.append(crash.crash_finding(death, interpreters=interpreters, flags=flags,
                                             related=related))
        status = status_of(main_exit, oom_killed=oom_main)
        found += messages
        found += memory.leak_findings(views)
        observed = any(f.severity.value != "info" for f in found)
        if status in (Status.CRASH, Status.OOM):
            reading = self.monitor.gpu or self.monitor.gpu_reading()
            gpu_finding = gpu.gpu_finding(reading, moment="crash", tree_pids=set(by_pid),
                                          host_idle=None)
            if gpu_finding is not None:
                found.append(gpu_finding)
        found = merge_findings(found, snapshot_findings or [])
        return Ending(status, main_exit, views, deaths, found,
                      crash_dumps={pid: dumps[pid][2] for pid in dumps}, observed=observed)

    def _role(self, pid: int, infos: dict[int, dict]) -> str:
        info = infos.get(pid, {})
        if info.get("forked_from"):
            return f"worker forked from pid {info['forked_from']}"
        proc = self.monitor.known(pid)
        parent = info.get("ppid") or (proc.ppid if proc else None)
        return f"worker of pid {parent}" if parent else "worker"

    def _death(self, pid: int, number: int | None, role: str, exit_: Exit | None,
               dumps: dict, events: list[KernelEvent], by_pid: dict[int, ProcView]) -> Death:
        fatal, threads, _text = dumps.get(pid, ("", [], ""))
        for thread in threads:
            if self.hide is not None:
                thread.frames = _without(thread.frames, self.hide)
            annotate(thread.frames)
        view = by_pid.get(pid)
        proc = self.monitor.known(pid)
        # Files the kernel log may name: libraries seen mapped, and the executable (read
        # when the process appeared, or found from its command line).
        candidates = set(self.mapped)
        if proc is not None:
            candidates.add(proc.exe)
            if proc.cmdline:
                candidates.add(shutil.which(proc.cmdline[0]) or "")
        if pid == self.main_pid and self.command:
            candidates.add(shutil.which(self.command[0]) or "")
        mapped = sorted(os.path.realpath(p) for p in candidates if p)
        mine = [e for e in events if e.pid == pid]
        death = Death(pid=pid, signal=number, role=role,
                      command=view.command if view else (proc.name if proc else "?"),
                      exit=exit_, fatal=fatal, threads=threads, kernel=mine,
                      peak_rss=proc.peak_rss if proc else 0, mapped=mapped)
        _read_kernel_library(death)
        return death


def _injected(frame: Frame) -> bool:
    """numdoctor's own hook in the program (the wrapper that records reaped children)."""
    return frame.kind == "python" and frame.file.startswith(INJECT_DIR)


def _without(frames: list[Frame], hide: Callable[[Frame], bool]) -> list[Frame]:
    """`frames` without the hidden ones, and without the native frames below the outermost
    kept Python frame once hidden Python frames were dropped there (the interpreter's own
    entry, which says nothing)."""
    kept = [f for f in frames if not hide(f)]
    if len(kept) == len(frames):
        return kept
    last_python = max((i for i, f in enumerate(kept) if f.kind == "python"), default=-1)
    if last_python >= 0 and any(hide(f) for f in frames if f.kind == "python"):
        kept = kept[:last_python + 1]
    return kept


def _read_kernel_library(death: Death) -> None:
    """The library the kernel log names as holding the faulting instruction: its full path,
    its package, and the instruction's bytes when the log did not print them."""
    for event in death.kernel:
        if not event.library or event.kind == "oom-kill":
            continue
        path = next((p for p in death.mapped if os.path.basename(p) == event.library), "")
        death.kernel_library = path or event.library
        death.kernel_library_package = package_of(death.kernel_library)
        if event.kind == "invalid opcode" and not event.code and path and \
                event.file_offset is not None:
            event.code = isa.read_code(path, event.file_offset)
        return
