"""`numdoctor run`'s loop: run the program, relay its output, and decide when it is in trouble.

`supervise(options)` starts the program (core.tree, with the run directory's environment),
relays its output (output), samples its tree (core.monitor, through `Watch`) and takes
snapshots of it from the outside (snapshots) until it exits or an incident happens:

- hang: no output and no heartbeat for --hang-timeout s, and the tree's CPU near zero;
- spinning: no output and no heartbeat for --spin-timeout s (default: --hang-timeout) while
  the tree keeps CPUs busy;
- timeout: --timeout s of wall-clock time (stopped time excluded);
- interrupted: a second SIGINT/SIGTERM;
- deadlock: with no timeout at all, the tree went idle and the hang analysis *proved* it can
  never continue (sentinel): reported within seconds, and the tree ended unless
  --keep-running.

What happens then is the Watch's business (`incident()`: dump, diagnose; `ending()`: judge the
exit), and the report's (report.build). This module only decides when.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import time

from numdoctor.core import tree
from numdoctor.core.rundir import RunDir
from numdoctor.core.status import Status, from_wait_status
from numdoctor.supervise import output

TYPE_CHECKING = False  # typing itself is not imported before the program starts

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from numdoctor.findings import Finding, Report
    from numdoctor.supervise.watch import Ending, Examination, Incident

HANG_EXIT = 124


class Options:
    """What to run and how to watch it. (Plain classes, not dataclasses, in everything that
    is imported before the program starts: each millisecond there delays the program.)"""

    def __init__(self, command: list[str], *, hang_timeout: float | None = None,
                 spin_timeout: float | None = None, timeout: float | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 interval: float | None = None, tool_timeout: float = 5.0,
                 first_stop_kills: bool = False, report_always: bool = True,
                 keep_running: bool = False,
                 on_report: Callable[[Outcome], None] | None = None,
                 start: Callable[..., Any] | None = None,
                 proof_pace: float = 1.0) -> None:
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
        # A proven deadlock is reported (through on_report) and the program left running.
        self.keep_running = keep_running
        self.on_report = on_report
        # How the program is started: core.tree.spawn's signature and result (pid and
        # returncode are all the loop uses). probe's fork server passes a program it forked
        # before this supervisor existed.
        self.start = start
        # Scales the sentinel's waits (idle before a look, proof to confirmation): probe's
        # scenarios are short programs whose deadlocks it must tell apart quickly.
        self.proof_pace = proof_pace


class Outcome:
    def __init__(self, exit_code: int, status: Status, report: Report | None, facts: Any = None,
                 leftovers: list[int] | None = None, noteworthy: bool = False) -> None:
        self.exit_code = exit_code
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
        # Often enough that a hang is seen within 1/20 of its timeout; without a timeout,
        # twice a second: enough to see the tree go idle (a proven deadlock is reported
        # within seconds), and a sample costs well under a millisecond.
        self.interval = options.interval or (
            min(0.5, max(0.05, min(limits) / 20)) if limits else 0.5)
        self.run_dir = RunDir()
        self.scanner: Any = None  # the message scanner, created once the program has started
        self.notes: list[str] = []
        self.main_status: int | None = None
        self.paused = 0.0  # seconds the program spent stopped by Ctrl-Z
        self.stop_signal: int = signal.SIGINT  # what ended an interrupted run
        self.helpers: set[int] = set()  # our tool processes (py-spy...): not the program's
        self.collecting = True  # whether the cyclic garbage collector was on (see run)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        # The cyclic collector stays off while the supervisor starts (the imports and the
        # program's start allocate tens of thousands of objects and free next to none: its
        # passes over them cost about a tenth of a whole run's CPU) and while the report is
        # assembled. The loop in between, which may last days, runs with it on, over what
        # the loop allocates only (the start-up objects are frozen).
        self.collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if self.collecting:
                gc.unfreeze()
                gc.enable()

    def _run(self) -> Outcome:
        from numdoctor.core.kmsg import KernelLog
        from numdoctor.supervise.signals import Signals

        if not tree.become_subreaper():
            self.notes.append("could not become a child subreaper: processes that daemonise "
                              "(double fork) may escape the kill")
        self.kernel = KernelLog()
        if self.kernel.unavailable:
            self.notes.append(self.kernel.unavailable)
        self.streams = output.plan(lambda data: self.scanner.feed(data))
        self.signals = Signals()
        env = self.run_dir.environment(
            self.options.env if self.options.env is not None else os.environ,
            hang_timeout=self.options.hang_timeout)
        try:
            try:
                start = self.options.start or tree.spawn
                self.child = start(self.options.command, env=env,
                                        stdout=self.streams.child_stdout,
                                        stderr=self.streams.child_stderr,
                                        cwd=self.options.cwd)
            finally:
                from numdoctor.rules.messages import MessageScanner

                self.scanner = MessageScanner()
                self.streams.start()  # closes our copies of the program's ends
            self.started = time.monotonic()
            try:
                return self._supervise()
            except BaseException:
                # Never leave the program running unsupervised behind a failure of ours.
                tree.kill_tree(os.getpid(), session=self.child.pid, reap_all=True)
                raise
        finally:
            self.signals.restore()
            self.kernel.close()
            self.run_dir.remove()

    def _supervise(self) -> Outcome:
        from numdoctor.supervise.snapshots import Snapshots, schedule
        from numdoctor.supervise.watch import Watch

        self.watch = Watch(self.child.pid, self.run_dir, started=self.started, subreaper=True,
                           command=self.options.command, helpers=self.helpers,
                           kernel=self.kernel)
        self.monitor = self.watch.monitor
        self.snapshots = Snapshots(self.monitor, self.child.pid, self.started,
                                   lambda infos: self.watch.infos())
        from numdoctor.supervise.sentinel import Sentinel

        self.sentinel = Sentinel(self.watch, pace=self.options.proof_pace)
        self.proof: Examination | None = None
        self.last_progress = self.shown_progress = self.started
        heartbeat_mtime = _mtime(self.run_dir.heartbeat)
        next_sample = self.started
        times = schedule()
        next_snapshot = next(times)
        incident: Status | None = None
        if self.collecting:
            gc.freeze()
            gc.enable()
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_sample, self.started + next_snapshot) - now)
            if self.signals.active:
                select.select([self.signals.read_fd], [], [], wait)
            else:
                time.sleep(min(wait, 0.05))
            incident = self._handle_signals() or incident
            status = self.watch.reap()
            if status is not None:
                self.main_status = status
                self.child.returncode = from_wait_status(status).code
                break
            if incident:
                break
            now = time.monotonic()
            if now >= next_sample:
                self.monitor.sample(now, io=self.streams.blind)
                next_sample = now + self.interval
                # Progress: output, a heartbeat, or (where output is invisible) bytes written.
                # The sentinel counts only the first two: a rank's store client writes to
                # its socket while it waits in a collective that will never complete.
                self.shown_progress = max(self.shown_progress, self.streams.last_output())
                if self.streams.files_grew():
                    self.shown_progress = now
                mtime = _mtime(self.run_dir.heartbeat)
                if mtime != heartbeat_mtime:
                    heartbeat_mtime, self.shown_progress = mtime, now
                self.last_progress = max(self.last_progress, self.shown_progress)
                if self.streams.blind and self.monitor.wrote_since_last_call():
                    self.last_progress = now
                incident = self._check_limits(now)
                if incident:
                    break
                # The moment the silence reaches a timeout gets a sample of its own: the
                # verdict comes then, not up to an interval later.
                for limit in (self.options.hang_timeout, self.spin_timeout):
                    if limit and now < self.last_progress + limit < next_sample:
                        next_sample = self.last_progress + limit
                proof = self.sentinel.check(now, self.shown_progress)
                if proof is not None:
                    if not self.options.keep_running:
                        self.proof, incident = proof, Status.DEADLOCK
                        break
                    self._report_and_go_on(proof)
            if now - self.started >= next_snapshot:
                self.snapshots.take(self.run_dir.infos(), background=True)
                next_snapshot = next(times)
        gc.disable()
        if incident:
            return self._incident(incident)
        return self._exited()

    def _check_limits(self, now: float) -> Status | None:
        options = self.options
        if options.timeout and now - self.started - self.paused >= options.timeout:
            return Status.TIMEOUT
        silent = now - self.last_progress
        if options.hang_timeout and silent >= options.hang_timeout:
            if self.monitor.idle_since(now - options.hang_timeout):
                return Status.HANG
        if self.spin_timeout and silent >= self.spin_timeout:
            if self.monitor.idle_since(now - self.spin_timeout) is False:
                return Status.SPINNING
        return None

    def _handle_signals(self) -> Status | None:
        from numdoctor.supervise.signals import FORWARDED, STOPPING

        for signum in self.signals.take():
            if signum in FORWARDED:
                stops = self.signals.stop_requests()
                if signum in STOPPING and (stops >= 2 or self.options.first_stop_kills):
                    self.stop_signal = signum
                    return Status.INTERRUPTED
                tree.signal_group(self.child.pid, signum)
            elif signum == signal.SIGWINCH:
                self.streams.sync_window_size()
                tree.signal_group(self.child.pid, signal.SIGWINCH)
            elif signum == signal.SIGTSTP:
                stopped = time.monotonic()
                tree.signal_group(self.child.pid, signal.SIGSTOP)
                os.kill(os.getpid(), signal.SIGSTOP)  # returns once we are continued
                tree.signal_group(self.child.pid, signal.SIGCONT)
                resumed = time.monotonic()
                self.paused += resumed - stopped
                self.last_progress = max(self.last_progress, resumed)
            elif signum == signal.SIGCONT:
                tree.signal_group(self.child.pid, signal.SIGCONT)
                self.last_progress = max(self.last_progress, time.monotonic())
        return None

    def _messages(self) -> list[Finding]:
        from numdoctor.rules.messages import findings

        region = self.streams.stderr_file_region()
        if region:
            self.scanner.scan_all(region)
        context = self.watch.message_context(self.snapshots.openmp_libraries())
        return findings(self.scanner.hits, context)

    # -- incidents --------------------------------------------------------------------------
    def _incident(self, kind: Status) -> Outcome:
        from numdoctor.findings import merge_findings

        detected = time.monotonic()
        options = self.options
        windows = {Status.HANG: options.hang_timeout, Status.SPINNING: self.spin_timeout}
        window = windows.get(kind) or min(10.0, max(1.0, detected - self.started))
        self.snapshots.take(self.watch.infos())  # runs while the stacks are dumped
        if self.signals.stop_requests() >= 3 and kind is Status.INTERRUPTED:
            # the user insists: no dump, kill now
            incident = None
        else:
            incident = self._examine(kind, window, detected)
        self.snapshots.wait(2.0)
        killed = self.watch.kill()
        if self.child.pid in killed.statuses:
            self.main_status = killed.statuses[self.child.pid]
            self.child.returncode = from_wait_status(self.main_status).code
        self.watch.timings["detect_to_killed"] = time.monotonic() - detected
        self.streams.drain()
        self.scanner.finish()
        messages = self._messages()
        if incident is None:
            from numdoctor.supervise.watch import Incident

            incident = Incident(kind, [], {}, messages, window, detected)
        else:
            incident.findings += [m for m in messages if m not in incident.findings]
        findings = merge_findings(incident.findings, self.snapshots.findings())
        exit_code = 128 + self.stop_signal if kind is Status.INTERRUPTED else HANG_EXIT
        self.watch.timings["detect_to_diagnosed"] = time.monotonic() - detected
        silent = detected - self.last_progress
        if kind is Status.HANG:
            headline = f"the program hung: no output, heartbeat or CPU use for {silent:.1f} s"
        elif kind is Status.SPINNING:
            headline = f"the program spun for {silent:.1f} s without output or heartbeat"
        elif kind is Status.TIMEOUT:
            headline = f"the program ran past --timeout {options.timeout:g} s"
        elif kind is Status.DEADLOCK and incident.diagnosis is not None:
            idle = incident.diagnosis and self.proof and self.proof.facts.idle_for
            headline = (f"the program is deadlocked: {incident.diagnosis.summary}"
                        + (f" (proven {idle:.1f} s after it went idle, no timeout needed)"
                           if idle else ""))
        else:
            from numdoctor.core.status import signal_name

            headline = (f"stopped by {signal_name(self.stop_signal)}: the stacks were dumped "
                        "and the program was killed")
        headline += (f"; killed {len(killed.killed)} process(es) after dumping their stacks; "
                     f"exit status {exit_code}")
        if killed.survivors:
            self.notes.append("processes that could not be killed (uninterruptible sleep, "
                              f"or another user's): {killed.survivors}")
        return self._outcome(kind, exit_code, headline, findings, incident.views,
                             incident.stacks, {}, killed.killed, killed.survivors,
                             self._program_exit_text(), diagnosis=incident.diagnosis)

    def _examine(self, kind: Status, window: float, detected: float) -> Incident:
        # The messages the program printed so far sharpen the diagnosis; the rest of its
        # output is read once it is dead.
        return self.watch.incident(
            kind, window=window, silent_for=detected - self.last_progress,
            elapsed=detected - self.started - self.paused, timeout=self.options.timeout,
            messages=[], examination=self.proof)

    def _report_and_go_on(self, proof: Examination) -> None:
        """--keep-running: the report of a proven deadlock, while the program lives on."""
        from numdoctor.findings import merge_findings

        window = proof.facts.window
        incident = self.watch.incident(
            Status.DEADLOCK, window=window, silent_for=time.monotonic() - self.last_progress,
            elapsed=time.monotonic() - self.started, timeout=None,
            messages=self._messages(), examination=proof)
        findings = merge_findings(incident.findings, self.snapshots.findings())
        headline = (f"the program is deadlocked: {proof.diagnosis.summary}; numdoctor left it "
                    "running (--keep-running)")
        outcome = self._outcome(Status.DEADLOCK, HANG_EXIT, headline, findings,
                                incident.views, incident.stacks, {}, [], [],
                                "is still running", diagnosis=proof.diagnosis)
        if self.options.on_report is not None:
            self.options.on_report(outcome)

    def _program_exit_text(self) -> str:
        if self.main_status is None:
            return "was still running when numdoctor gave up killing it"
        ended = from_wait_status(self.main_status)
        if ended.signal == signal.SIGKILL:
            return "was killed by numdoctor (SIGKILL) after the dump"
        return ended.describe() + " while numdoctor was stopping it"

    # -- the program exited -----------------------------------------------------------------
    def _exited(self) -> Outcome:
        main_exit = from_wait_status(self.main_status or 0)
        leftovers = self.watch.leftovers()
        self.streams.drain()
        self.scanner.finish()
        if main_exit.code == 0 and not self.options.report_always:
            # Quiet on success: the exit status is all the user gets, so compute nothing else.
            return Outcome(0, Status.OK, None, leftovers=leftovers.killed)
        self.snapshots.wait(0.5)
        self.watch.mapped = self.snapshots.mapped_files()
        ending = self.watch.ending(self.main_status or 0, hits=self.scanner.hits,
                                   messages=self._messages(),
                                   snapshot_findings=self.snapshots.findings())
        status = ending.status
        headline = _exit_headline(ending)
        noteworthy = status is not Status.OK and (status is not Status.EXIT or ending.observed)
        if status is Status.SIGNAL and main_exit.signal == signal.SIGPIPE:
            noteworthy = False  # the reader of its output left (`cmd | head`): not a failure
        if leftovers.killed:
            self.notes.append(
                f"{len(leftovers.killed)} process(es) started by the program were still "
                f"running after it exited and were terminated: {leftovers.killed}")
        outcome = self._outcome(status, main_exit.code, headline, ending.findings,
                                ending.views, {}, ending.crash_dumps, leftovers.killed,
                                leftovers.survivors,
                                ("was " if main_exit.signal else "") + main_exit.describe())
        outcome.noteworthy = noteworthy
        return outcome

    def _outcome(self, status: Status, exit_code: int, headline: str, findings: list[Finding],
                 views: list, stacks: dict, crash_dumps: dict, killed: list[int],
                 survivors: list[int], program_exit: str, diagnosis: Any = None) -> Outcome:
        import resource

        from numdoctor.supervise.report import RunFacts, build

        gpu = self.monitor.gpu
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
        timings = dict(self.watch.timings)
        if self.snapshots.seconds:
            timings["snapshot"] = self.snapshots.seconds
        snapshot = self.snapshots.snapshot()
        facts = RunFacts(
            command=list(self.options.command), status=status, exit_code=exit_code,
            program_exit=program_exit, duration=time.monotonic() - self.started,
            headline=headline, findings=findings,
            snapshot=snapshot.to_dict() if snapshot is not None else None,
            views=views, stacks=stacks, crash_dumps=crash_dumps,
            wiring=self.streams.describe(), stderr_tail=self.streams.stderr_tail(),
            resources=resources, gpu=gpu_data,
            notes=self.notes + self.watch.notes + self.snapshots.notes, timings=timings,
            killed=killed, survivors=survivors,
            diagnosis=diagnosis.to_dict() if diagnosis is not None else None)
        return Outcome(exit_code=exit_code, status=status, report=build(facts), facts=facts,
                       leftovers=[] if status.incident else killed,
                       noteworthy=status.incident)


def _exit_headline(ending: Ending) -> str:
    main_exit = ending.main_exit
    status = ending.status
    if status is Status.OK:
        text = "the program exited normally"
    elif status is Status.EXIT:
        text = f"the program {main_exit.describe()}"
    elif status is Status.OOM:
        text = "the program was killed by the kernel's OOM killer"
    else:
        text = f"the program was {main_exit.describe()}"
        main = next((f for f in ending.findings if f.code.startswith("SIG")
                     and "(main)" in f.where), None)
        if main is not None and " in " in main.title:
            text += " in " + main.title.split(" in ", 1)[1]
    others = [d for d in ending.deaths if d.role != "main"]
    if others:
        text += f"; {len(others)} other process(es) of the tree crashed"
    return text + f"; exit status {main_exit.code}"


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
