"""The supervision loop: run the program, watch it, and on trouble find out where and why.

`supervise(options)` starts the program (launcher), relays its output (output), samples its
tree (monitor) and takes snapshots of it from the outside (facts) until it exits or an
incident happens:

- hang: no output and no heartbeat for --hang-timeout s, and the tree's CPU near zero;
- spinning: no output and no heartbeat for --spin-timeout s (default: --hang-timeout) while
  the tree keeps CPUs busy;
- timeout: --timeout s of wall-clock time (stopped time excluded);
- interrupted: a second SIGINT/SIGTERM.

On an incident every process is dumped (stacks), the dump is diagnosed, then the whole tree
is killed. When the program exits on its own, its status is classified (classify, diagnose),
leftover descendants are terminated, and stderr is matched against the message knowledge
base. Either way the result is a `Report`.
"""

from __future__ import annotations

import os
import re
import resource
import select
import shlex
import signal
import sys
import threading
import time

from numdoctor.supervise import launcher, output
from numdoctor.supervise.waitstatus import Exit, from_wait_status

TYPE_CHECKING = False  # typing itself is not imported before the program starts

if TYPE_CHECKING:
    from typing import Any

    from numdoctor.findings import Finding, Report

HANG_EXIT = 124
SNAPSHOT_SCHEDULE = (1.0, 4.0, 15.0, 60.0)
SNAPSHOT_EVERY = 300.0
_PYTHON_EXE = re.compile(r"^(?:python|pypy)[\d.]*[dmu]*$")


class Options:
    """What to run and how to watch it. (Plain classes, not dataclasses, in everything that
    is imported before the program starts: each millisecond there delays the program.)"""

    def __init__(self, command: list[str], *, hang_timeout: float | None = None,
                 spin_timeout: float | None = None, timeout: float | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 interval: float | None = None, tool_timeout: float = 5.0,
                 first_stop_kills: bool = False, report_always: bool = True) -> None:
        self.command = list(command)
        self.hang_timeout = hang_timeout
        # None: the same as hang_timeout; 0: never act on spinning.
        self.spin_timeout = spin_timeout
        self.timeout = timeout
        self.env = env
        self.cwd = cwd
        self.interval = interval  # seconds between samples (default: from the timeouts)
        self.tool_timeout = tool_timeout  # per py-spy/pystack/gdb call
        # isolate(): the first SIGINT/SIGTERM (the caller was interrupted or died) already
        # stops the program, instead of being forwarded to it.
        self.first_stop_kills = first_stop_kills
        # Build the report after a success too (--report); without it a success costs
        # nothing beyond the exit status.
        self.report_always = report_always


class Outcome:
    def __init__(self, exit_code: int, status: str, report: Report | None, facts: Any = None,
                 leftovers: list[int] | None = None, noteworthy: bool = False) -> None:
        self.exit_code = exit_code
        # ok, exit, signal, crash, oom, hang, spinning, timeout, interrupted
        self.status = status
        self.report = report  # None only after a success with report_always=False
        self.facts = facts
        self.leftovers = leftovers or []  # processes killed after the program exited
        # Worth telling the user on stderr: any failure but a plain non-zero exit, and a
        # plain non-zero exit when something was observed at run time (a recognised message,
        # a crashed worker, a leak) - not merely what the snapshot rules say.
        self.noteworthy = noteworthy


def supervise(options: Options) -> Outcome:
    return _Supervision(options).run()


class _Supervision:
    def __init__(self, options: Options) -> None:
        self.options = options
        spin = options.spin_timeout
        self.spin_timeout = options.hang_timeout if spin is None else (spin or None)
        limits = [t for t in (options.hang_timeout, self.spin_timeout, options.timeout) if t]
        # Often enough that a hang is seen within 1/20 of its timeout; without a timeout the
        # samples only feed the memory series, and once a second leaves the CPUs alone.
        self.interval = options.interval or (
            min(0.5, max(0.05, min(limits) / 20)) if limits else 1.0)
        self.run_dir = _private_directory()
        self.heartbeat_file = os.path.join(self.run_dir, "heartbeat")
        with open(self.heartbeat_file, "w"):
            pass
        self.dump_signal = launcher.default_dump_signal()
        self.scanner = None  # the message scanner, created once the program has started
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.main_status: int | None = None
        self.capture = None  # the latest facts.Capture of the program's main process
        self._snapshot = None  # its Snapshot, built when a report needs it
        self._snapshot_built_from = None
        self.mapped: set[str] = set()
        self.paused = 0.0  # seconds the program spent stopped by Ctrl-Z
        self.stop_signal = signal.SIGINT  # what ended an interrupted run
        self.helpers: set[int] = set()  # our tool processes (py-spy...): not the program's
        self._snapshot_thread: threading.Thread | None = None
        self._snapshot_lock = threading.Lock()
        self._snapshot_serial = 0  # snapshots started
        self._snapshot_taken = 0  # serial of the one in self.capture

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        from numdoctor.supervise.kmsg import KernelLog
        from numdoctor.supervise.signals import Signals

        if not launcher.become_subreaper():
            self.notes.append("could not become a child subreaper: processes that daemonise "
                              "(double fork) may escape the kill")
        self.kernel = KernelLog()
        if self.kernel.unavailable:
            self.notes.append(self.kernel.unavailable)
        self.streams = output.plan(lambda data: self.scanner.feed(data))
        self.signals = Signals()
        launch = launcher.Launch(self.run_dir, self.dump_signal, self.heartbeat_file,
                                 self.options.hang_timeout)
        env = launch.environment(self.options.env if self.options.env is not None
                                 else os.environ)
        try:
            try:
                self.child = launcher.spawn(self.options.command, env=env,
                                            stdout=self.streams.child_stdout,
                                            stderr=self.streams.child_stderr,
                                            cwd=self.options.cwd)
            finally:
                from numdoctor.supervise.messages import MessageScanner

                self.scanner = MessageScanner()
                self.streams.start()  # closes our copies of the program's ends
            self.started = time.monotonic()
            try:
                return self._supervise()
            except BaseException:
                # Never leave the program running unsupervised behind a failure of ours.
                launcher.kill_tree(os.getpid(), group=self.child.pid)
                raise
        finally:
            self.signals.restore()
            self.kernel.close()
            import shutil

            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _supervise(self) -> Outcome:
        from numdoctor.supervise.monitor import Monitor

        self.monitor = Monitor(self.child.pid, exclude=lambda: self.helpers)
        self.monitor.track(self.child.pid)
        self.last_progress = self.started
        heartbeat_mtime = os.stat(self.heartbeat_file).st_mtime_ns
        next_sample = self.started
        schedule = self._snapshot_times()
        next_snapshot = next(schedule)
        incident = ""
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_sample, self.started + next_snapshot) - now)
            if self.signals.active:
                select.select([self.signals.read_fd], [], [], wait)
            else:
                time.sleep(min(wait, 0.05))
            incident = self._handle_signals() or incident
            statuses = launcher.reap()
            if self.child.pid in statuses:
                self.main_status = statuses[self.child.pid]
                self.child.returncode = from_wait_status(self.main_status).code
            if self.main_status is not None:
                break
            if incident:
                break
            now = time.monotonic()
            if now >= next_sample:
                self.monitor.sample(now, io=bool(self.streams.unobservable))
                next_sample = now + self.interval
                # Progress: output, a heartbeat, or (where output is invisible) bytes written.
                self.last_progress = max(self.last_progress, self.streams.last_output())
                if self.streams.files_grew():
                    self.last_progress = now
                mtime = _mtime(self.heartbeat_file)
                if mtime != heartbeat_mtime:
                    heartbeat_mtime, self.last_progress = mtime, now
                if self.streams.unobservable and self.monitor.wrote_since_last_call():
                    self.last_progress = now
                incident = self._check_limits(now)
                if incident:
                    break
            if now - self.started >= next_snapshot:
                self._take_snapshot(background=True)
                next_snapshot = next(schedule)
        if incident:
            return self._incident(incident)
        return self._exited()

    @staticmethod
    def _snapshot_times():
        """Seconds after the start at which to take a snapshot: early, then less often (the
        program loads libraries as it imports them; the latest picture wins)."""
        yield from SNAPSHOT_SCHEDULE
        later = SNAPSHOT_SCHEDULE[-1]
        while True:
            later += SNAPSHOT_EVERY
            yield later

    def _check_limits(self, now: float) -> str:
        options = self.options
        if options.timeout and now - self.started - self.paused >= options.timeout:
            return "timeout"
        silent = now - self.last_progress
        if options.hang_timeout and silent >= options.hang_timeout:
            if self.monitor.idle_since(now - options.hang_timeout):
                return "hang"
        if self.spin_timeout and silent >= self.spin_timeout:
            if self.monitor.idle_since(now - self.spin_timeout) is False:
                return "spinning"
        return ""

    def _handle_signals(self) -> str:
        from numdoctor.supervise.signals import FORWARDED, STOPPING

        for signum in self.signals.take():
            if signum in FORWARDED:
                stops = self.signals.stop_requests()
                if signum in STOPPING and (stops >= 2 or self.options.first_stop_kills):
                    self.stop_signal = signum
                    return "interrupted"
                launcher.signal_group(self.child.pid, signum)
            elif signum == signal.SIGWINCH:
                self.streams.sync_window_size()
                launcher.signal_group(self.child.pid, signal.SIGWINCH)
            elif signum == signal.SIGTSTP:
                stopped = time.monotonic()
                launcher.signal_group(self.child.pid, signal.SIGSTOP)
                os.kill(os.getpid(), signal.SIGSTOP)  # returns once we are continued
                launcher.signal_group(self.child.pid, signal.SIGCONT)
                resumed = time.monotonic()
                self.paused += resumed - stopped
                self.last_progress = max(self.last_progress, resumed)
            elif signum == signal.SIGCONT:
                launcher.signal_group(self.child.pid, signal.SIGCONT)
                self.last_progress = max(self.last_progress, time.monotonic())
        return ""

    # -- snapshots --------------------------------------------------------------------------
    def _target(self, infos: dict[int, dict]) -> int | None:
        """The program's main Python process: the snapshot describes it."""
        live = [p for p in self.monitor.live()]
        if self.child.pid in infos and any(p.pid == self.child.pid for p in live):
            return self.child.pid
        for proc in sorted(live, key=lambda p: p.first_seen):
            if proc.pid in infos and not infos[proc.pid].get("forked_from"):
                return proc.pid
        return self.child.pid if any(p.pid == self.child.pid for p in live) else None

    def _take_snapshot(self, *, background: bool = False) -> threading.Thread | None:
        """Take a snapshot of the program's main Python process from the outside, in a thread.

        The periodic ones run at the lowest CPU priority, so that a program that keeps every
        CPU busy does not wait for them; the one at an incident runs at normal priority while
        the stacks are dumped. The newest snapshot wins.
        """
        from numdoctor.supervise.stacks import read_info

        if background and self._snapshot_thread is not None and \
                self._snapshot_thread.is_alive():
            return None  # the previous one is still running on a busy machine
        infos = read_info(self.run_dir)
        pid = self._target(infos)
        if pid is None:
            return None
        self._snapshot_serial += 1
        thread = threading.Thread(
            target=self._collect_snapshot, args=(pid, infos, background, self._snapshot_serial),
            daemon=True, name="numdoctor-snapshot")
        thread.start()
        self._snapshot_thread = thread
        return thread

    def _collect_snapshot(self, pid: int, infos: dict[int, dict], nice: bool,
                          serial: int) -> None:
        from numdoctor.supervise.facts import capture

        if nice:
            try:  # this thread only: Linux priorities are per thread
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except (OSError, AttributeError):
                pass
        started = time.perf_counter()
        self._learn_sites(infos)
        try:
            taken = capture(pid, infos.get(pid))
        except Exception as exc:  # a bug in a collector must not end the supervision
            self.notes.append(f"snapshot of pid {pid} failed: {type(exc).__name__}: {exc}")
            return
        with self._snapshot_lock:
            if serial >= self._snapshot_taken:  # an older, slower one must not win
                self._snapshot_taken = serial
                self.capture = taken
            self.mapped.update(m.path for m in taken.maps if m.path.startswith("/"))
        self.timings["snapshot"] = self.timings.get("snapshot", 0.0) + \
            time.perf_counter() - started

    def snapshot(self):
        """The Snapshot of the latest capture, built on first use (pip lookups and system
        facts cost more than the capture, and are only needed for a report)."""
        from numdoctor.supervise.facts import build

        taken = self.capture
        if taken is None:
            return None
        if self._snapshot_built_from is not taken:
            try:
                self._snapshot = build(taken, self.started)
            except Exception as exc:
                self.notes.append(f"snapshot of pid {taken.pid} failed: "
                                  f"{type(exc).__name__}: {exc}")
                self._snapshot = None
            self._snapshot_built_from = taken
        return self._snapshot

    def _learn_sites(self, infos: dict[int, dict]) -> None:
        from numdoctor.supervise.classify import add_site_dirs

        for info in infos.values():
            add_site_dirs([str(d) for d in info.get("site_dirs", ())])

    # -- incidents --------------------------------------------------------------------------
    def _incident(self, kind: str) -> Outcome:
        from numdoctor.supervise import diagnose
        from numdoctor.supervise.stacks import Target, read_info

        detected = time.monotonic()
        options = self.options
        windows = {"hang": options.hang_timeout, "spinning": self.spin_timeout}
        window = windows.get(kind) or min(10.0, max(1.0, detected - self.started))
        self.monitor._discover(detected)
        self.monitor.sample(detected)
        infos = read_info(self.run_dir)
        self._learn_sites(infos)
        views = self._views(infos, window, detected)
        quick = kind == "interrupted"
        gpu = self.monitor.gpu_reading()
        snapshot_thread = self._take_snapshot()  # runs while the stacks are dumped
        targets = [Target(v.pid, python=v.python, dumpable=bool(infos.get(v.pid, {})
                                                                .get("dumps")))
                   for v in views if launcher.alive(v.pid)]
        from numdoctor.supervise.stacks import Dumper

        self.dumper = Dumper(self.run_dir, self.dump_signal, helpers=self.helpers)
        started = time.monotonic()
        stacks = {} if self.signals.stop_requests() >= 3 else self.dumper.dump(
            targets, tool_timeout=1.5 if quick else options.tool_timeout,
            faulthandler_wait=0.5 if quick else 1.0)
        from numdoctor.supervise.classify import annotate

        for process in stacks.values():
            for thread in process.threads:
                annotate(thread.frames)
        self.timings["dump"] = time.monotonic() - started
        self.timings.update({f"dump_{k}": v for k, v in self.dumper.seconds.items()})
        if snapshot_thread is not None:
            snapshot_thread.join(2.0)
        killed = launcher.kill_tree(os.getpid(), group=self.child.pid,
                                    exclude=self.helpers)
        if self.child.pid in killed.statuses:
            self.main_status = killed.statuses[self.child.pid]
            self.child.returncode = from_wait_status(self.main_status).code
        self.timings["detect_to_killed"] = time.monotonic() - detected
        self.streams.drain()
        self.scanner.finish()

        interpreters = self._interpreters(infos)
        tree_cpu = self.monitor.tree_cpu_since(detected - window)
        findings: list[Finding] = []
        findings += diagnose.fork_findings(views, stacks, window)
        if kind in ("hang", "spinning", "timeout"):
            findings += diagnose.hang_findings(
                kind, window=window, silent_for=detected - self.last_progress,
                elapsed=detected - self.started - self.paused, views=views, stacks=stacks,
                tree_cpu=tree_cpu, timeout=options.timeout, interpreters=interpreters)
        findings += self._message_findings()
        findings += diagnose.leak_findings(views)
        gpu_finding = diagnose.gpu_finding(gpu, moment="hang", tree_pids={v.pid for v in views},
                                           host_idle=self.monitor.idle_since(detected - window))
        if gpu_finding is not None:
            findings.append(gpu_finding)
        findings = diagnose.merge(findings, self._snapshot_findings())
        exit_code = 128 + self.stop_signal if kind == "interrupted" else HANG_EXIT
        self.timings["detect_to_diagnosed"] = time.monotonic() - detected
        silent = detected - self.last_progress
        if kind == "hang":
            headline = f"the program hung: no output, heartbeat or CPU use for {silent:.1f} s"
        elif kind == "spinning":
            headline = f"the program spun for {silent:.1f} s without output or heartbeat"
        elif kind == "timeout":
            headline = f"the program ran past --timeout {options.timeout:g} s"
        else:
            from numdoctor.supervise.waitstatus import signal_name

            headline = (f"stopped by {signal_name(self.stop_signal)}: the stacks were dumped "
                        "and the program was killed")
        headline += (f"; killed {len(killed.killed)} process(es) after dumping their stacks; "
                     f"exit status {exit_code}")
        if killed.survivors:
            self.notes.append("processes that could not be killed (uninterruptible sleep, "
                              f"or another user's): {killed.survivors}")
        self._stack_notes(stacks)
        return self._outcome(kind, exit_code, headline, findings, views, stacks, {}, gpu,
                             killed.killed, killed.survivors,
                             self._program_exit_text())

    def _stack_notes(self, stacks: dict) -> None:
        if not any(s.native for s in stacks.values()) and stacks:
            reasons = sorted({n for s in stacks.values() for n in s.notes
                              if "native" in n or "gdb" in n or "py-spy" in n})
            self.notes.append("native stacks were not available"
                              + (": " + "; ".join(reasons) if reasons else ""))

    def _program_exit_text(self) -> str:
        if self.main_status is None:
            return "was still running when numdoctor gave up killing it"
        ended = from_wait_status(self.main_status)
        if ended.signal == signal.SIGKILL:
            return "was killed by numdoctor (SIGKILL) after the dump"
        return ended.describe() + " while numdoctor was stopping it"

    def _views(self, infos: dict[int, dict], window: float, now: float) -> list:
        from numdoctor.redact import redact_text
        from numdoctor.supervise.diagnose import ProcView

        views = []
        for proc in sorted(self.monitor.procs.values(), key=lambda p: (p.first_seen, p.pid)):
            if proc.gone and proc.pid != self.child.pid:
                continue
            info = infos.get(proc.pid, {})
            forked = info.get("forked_from")
            if forked is None and proc.pid != self.child.pid:
                parent = self.monitor.known(proc.ppid)
                if parent is not None and parent.exe and parent.exe == proc.exe and \
                        parent.cmdline == proc.cmdline and proc.pid not in infos:
                    forked = proc.ppid  # same program, no exec: a fork of a native program
            if proc.pid == self.child.pid:
                role = "main"
            elif forked:
                role = f"forked from {forked}"
            elif proc.ppid == os.getpid():
                role = "re-parented to numdoctor"
            else:
                role = f"child of {proc.ppid}"
            # The command line as the process itself reports it: a launcher script that
            # exec'd python shows up as python, not as the launcher.
            argv = info.get("argv") or _cmdline(proc.pid) or proc.cmdline
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

    def _interpreters(self, infos: dict[int, dict]) -> tuple[str, ...]:
        paths = {os.path.realpath(sys.executable)}
        for info in infos.values():
            if info.get("executable"):
                paths.add(os.path.realpath(str(info["executable"])))
        return tuple(sorted(paths))

    def _message_findings(self) -> list[Finding]:
        from numdoctor.rules._evidence import describe_library
        from numdoctor.supervise import isa
        from numdoctor.supervise.messages import Context, findings

        region = self.streams.stderr_file_region()
        if region:
            self.scanner.scan_all(region)
        libs = []
        snapshot = self.snapshot()
        if snapshot is not None:
            libs = [describe_library(lib) for lib in snapshot.libs("openmp")]
        context = Context(openmp_libraries=libs, cpu_flags=isa.cpu_flags(),
                          main_pid=self.child.pid)
        return findings(self.scanner.hits, context)

    def _snapshot_findings(self) -> list[Finding]:
        snapshot = self.snapshot()
        if snapshot is None:
            return []
        from numdoctor.rules import apply_rules

        return [f for f in apply_rules(snapshot) if f.code != "ND000"]

    # -- the program exited -----------------------------------------------------------------
    def _exited(self) -> Outcome:
        ended = time.monotonic()
        main_exit = from_wait_status(self.main_status or 0)
        leftovers = self._leftovers()
        self.streams.drain()
        self.scanner.finish()
        if main_exit.code == 0 and not self.options.report_always:
            # Quiet on success: the exit status is all the user gets, so compute nothing else.
            return Outcome(0, "ok", None, leftovers=leftovers.killed)
        from numdoctor.supervise import diagnose, isa
        from numdoctor.supervise.messages import shell_deaths
        from numdoctor.supervise.stacks import read_fatal, read_info

        if self._snapshot_thread is not None:
            self._snapshot_thread.join(0.5)
        self.monitor.sample(ended)
        infos = read_info(self.run_dir)
        self._learn_sites(infos)
        window = min(10.0, max(1.0, ended - self.started))
        views = self._views(infos, window, ended)
        interpreters = self._interpreters(infos)
        flags = isa.cpu_flags()
        by_pid = {v.pid: v for v in views}
        messages = self._message_findings()
        events = self.kernel.poll()
        dumps = read_fatal(self.run_dir)
        deaths: list[diagnose.Death] = []
        if main_exit.signal is not None:
            deaths.append(self._death(self.child.pid, main_exit.signal, "main", main_exit,
                                      dumps, events, by_pid))
        for pid in sorted(dumps):
            if pid == self.child.pid:
                continue
            fatal = dumps[pid][0]
            deaths.append(self._death(pid, diagnose.signal_from_fatal(fatal),
                                      self._role(pid, infos), None, dumps, events, by_pid))
        covered = {d.pid for d in deaths}
        for pid, what, _line in shell_deaths(self.scanner.hits):
            if pid not in covered and pid in by_pid:
                deaths.append(self._death(pid, diagnose.signal_from_fatal(what),
                                          by_pid[pid].role, None, dumps, events, by_pid))
                covered.add(pid)
        for event in events:
            if event.kind == "oom-kill" and event.pid in by_pid and event.pid not in covered:
                deaths.append(self._death(event.pid, signal.SIGKILL, by_pid[event.pid].role,
                                          None, dumps, events, by_pid))
                covered.add(event.pid)

        rises = {str(k): v for k, v in self.monitor.oom.rises().items()}
        from numdoctor.supervise import cgroup

        now_global = cgroup.global_oom_kills()
        base_global = self.monitor.oom.global_baseline
        global_rise = (now_global - base_global) if now_global is not None and \
            base_global is not None else 0
        findings: list[Finding] = []
        status = "ok" if main_exit.code == 0 else "exit"
        oom_main = False
        limit = peak = None
        groups = list(self.monitor.oom.groups.values())
        if groups:
            limit, peak = groups[0].limit(), groups[0].peak()
        for death in deaths:
            if death.signal == signal.SIGKILL and (
                    rises or global_rise or any(e.kind == "oom-kill" for e in death.kernel)):
                largest = sorted(views, key=lambda v: -v.peak_rss)
                findings.append(diagnose.oom_finding(death, rises=rises, limit=limit,
                                                     cgroup_peak=peak, largest=largest,
                                                     global_rise=global_rise))
                oom_main = oom_main or death.role == "main"
                continue
            related = messages if death.role == "main" else []
            findings.append(diagnose.crash_finding(death, interpreters=interpreters,
                                                   flags=flags, related=related))
        if main_exit.signal is not None:
            crash = main_exit.signal in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                         signal.SIGFPE, signal.SIGILL, signal.SIGKILL,
                                         signal.SIGSYS, signal.SIGTRAP)
            status = "oom" if oom_main else ("crash" if crash else "signal")
        findings += messages
        findings += diagnose.leak_findings(views)
        observed = any(f.severity.value != "info" for f in findings)
        if status in ("crash", "oom"):
            gpu = self.monitor.gpu or self.monitor.gpu_reading()
            gpu_finding = diagnose.gpu_finding(gpu, moment="crash", tree_pids=set(by_pid),
                                               host_idle=None)
            if gpu_finding is not None:
                findings.append(gpu_finding)
        findings = diagnose.merge(findings, self._snapshot_findings())
        headline = self._exit_headline(status, main_exit, deaths, findings)
        noteworthy = status != "ok" and (status != "exit" or observed)
        if status == "signal" and main_exit.signal == signal.SIGPIPE:
            noteworthy = False  # the reader of its output left (`cmd | head`): not a failure
        crash_dumps = {pid: dumps[pid][2] for pid in dumps}
        if leftovers.killed:
            self.notes.append(
                f"{len(leftovers.killed)} process(es) started by the program were still "
                f"running after it exited and were terminated: {leftovers.killed}")
        outcome = self._outcome(status, main_exit.code, headline, findings, views, {},
                                crash_dumps, self.monitor.gpu, leftovers.killed,
                                leftovers.survivors,
                                ("was " if main_exit.signal else "") + main_exit.describe())
        outcome.noteworthy = noteworthy
        return outcome

    def _leftovers(self) -> launcher.KillResult:
        """Processes the program left running: give them a moment, then terminate them."""
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            launcher.reap()
            alive = [p for p in launcher.descendants(os.getpid(), self.helpers)
                     if launcher.alive(p)]
            if not alive:
                return launcher.KillResult()
            time.sleep(0.05)
        return launcher.terminate_tree(os.getpid(), exclude=self.helpers)

    def _role(self, pid: int, infos: dict[int, dict]) -> str:
        info = infos.get(pid, {})
        if info.get("forked_from"):
            return f"worker forked from pid {info['forked_from']}"
        proc = self.monitor.known(pid)
        parent = info.get("ppid") or (proc.ppid if proc else None)
        return f"worker of pid {parent}" if parent else "worker"

    def _death(self, pid: int, number: int | None, role: str, exit_: Exit | None,
               dumps: dict, events: list, by_pid: dict) -> Any:
        from numdoctor.supervise.classify import annotate
        from numdoctor.supervise.diagnose import Death

        fatal, threads, _text = dumps.get(pid, ("", [], ""))
        for thread in threads:
            annotate(thread.frames)
        view = by_pid.get(pid)
        proc = self.monitor.known(pid)
        import shutil

        # Files the kernel log may name: libraries seen in snapshots, and the executable
        # (read when the process appeared, or found from its command line).
        with self._snapshot_lock:
            candidates = set(self.mapped)
        if proc is not None:
            candidates.add(proc.exe)
            if proc.cmdline:
                candidates.add(shutil.which(proc.cmdline[0]) or "")
        if pid == self.child.pid:
            candidates.add(shutil.which(self.options.command[0]) or "")
        mapped = sorted(os.path.realpath(p) for p in candidates if p)
        return Death(pid=pid, signal=number, role=role,
                     command=view.command if view else (proc.name if proc else "?"),
                     exit=exit_, fatal=fatal, threads=threads,
                     kernel=[e for e in events if e.pid == pid],
                     peak_rss=proc.peak_rss if proc else 0, mapped=mapped)

    def _exit_headline(self, status: str, main_exit: Exit, deaths: list,
                       findings: list[Finding]) -> str:
        if status == "ok":
            text = "the program exited normally"
        elif status == "exit":
            text = f"the program {main_exit.describe()}"
        elif status == "oom":
            text = "the program was killed by the kernel's OOM killer"
        else:
            text = f"the program was {main_exit.describe()}"
            main = next((f for f in findings if f.code.startswith("SIG")
                         and "(main)" in f.where), None)
            if main is not None and " in " in main.title:
                text += " in " + main.title.split(" in ", 1)[1]
        others = [d for d in deaths if d.role != "main"]
        if others:
            text += f"; {len(others)} other process(es) of the tree crashed"
        return text + f"; exit status {main_exit.code}"

    def _outcome(self, status: str, exit_code: int, headline: str, findings: list[Finding],
                 views: list, stacks: dict, crash_dumps: dict, gpu: Any, killed: list[int],
                 survivors: list[int], program_exit: str) -> Outcome:
        from numdoctor.supervise.report import RunFacts, build

        gpu_data = None
        if gpu is not None:
            gpu_data = {"available": gpu.available, "note": gpu.note,
                        "gpus": [g.to_dict() for g in gpu.gpus]}
        own = resource.getrusage(resource.RUSAGE_SELF)
        resources: dict[str, Any] = {
            # numdoctor's own CPU time (not the program's): what supervision cost
            "supervisor_cpu_s": round(own.ru_utime + own.ru_stime, 3),
            "peak_tree_rss": self.monitor.peak_tree_rss,
            "samples": self.monitor.samples,
            "sampling_s": round(self.monitor.sample_seconds, 4),
            "interval_s": self.interval,
        }
        groups = list(self.monitor.oom.groups.values())
        if groups:
            resources["cgroup"] = str(groups[0].path)
            resources["cgroup_limit"] = groups[0].limit()
            resources["cgroup_peak"] = groups[0].peak()
        facts = RunFacts(
            command=list(self.options.command), status=status, exit_code=exit_code,
            program_exit=program_exit, duration=time.monotonic() - self.started,
            headline=headline, findings=findings,
            snapshot=self.snapshot().to_dict() if self.snapshot() is not None else None,
            views=views, stacks=stacks, crash_dumps=crash_dumps,
            wiring=self.streams.describe(), stderr_tail=self.streams.stderr_tail(),
            resources=resources, gpu=gpu_data, notes=self.notes, timings=self.timings,
            killed=killed, survivors=survivors)
        incident = status in ("hang", "spinning", "timeout", "interrupted")
        return Outcome(exit_code=exit_code, status=status, report=build(facts), facts=facts,
                       leftovers=[] if incident else killed, noteworthy=incident)


def _private_directory() -> str:
    """A fresh 0700 directory for the run's files (tempfile.mkdtemp without its imports)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"numdoctor-run-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot create a private directory in {base}")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
