"""The pytest process's side of a test worker: start it, hand it tests, watch it, replace it.

A worker runs tests one after another, at pytest's own speed; the pytest process logs each
report as it arrives and waits for the test with a deadline. When the deadline passes (the
test hangs, GIL held or not) or the worker dies (a crash), the supervision core dumps every
thread of the worker's tree, diagnoses it like `numdoctor run` does, kills the tree, and the
test fails in the phase that was running; the next test gets a fresh worker.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import selectors
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from numdoctor.core import tree
from numdoctor.core.rundir import RunDir
from numdoctor.core.status import Status, from_wait_status
from numdoctor.pytest_plugin._channel import Receiver, Sender, widen
from numdoctor.pytest_plugin._harness import is_harness

# The diagnosis machinery is imported when a test first needs it (one that lasts, hangs or
# crashes): a suite that never does pays nothing for it. (In a session without bytecode
# caches, pytest rewrites the asserts of every module of a plugin's package on import.)
if TYPE_CHECKING:
    from numdoctor.core.stacks.model import Frame, ProcessStacks
    from numdoctor.supervise.sentinel import Sentinel
    from numdoctor.supervise.watch import Ending, Incident, Watch

# Seconds a worker may take to be ready: a fork starts in milliseconds (unless fork-unsafe
# state deadlocks it); a fresh interpreter imports and collects the whole session first.
STARTUP_LIMIT = {"fork": 60.0, "spawn": 300.0}
# Seconds a worker may take to stop (tear down the fixtures still set up) when asked to.
STOP_LIMIT = 60.0
# How often a running test's tree is sampled once it has run that long: the CPU history
# decides, at a deadline, between "hung" (idle) and "spinning" (busy), and shows the sentinel
# when the tree goes idle (a proven deadlock fails the test before its deadline).
SAMPLE_EVERY = 0.5
# How long the worker's messages may wait unread while tests pass: the terminal is that late
# at most, and the pytest process wakes that often, not once per test. While nothing arrives
# the wait doubles, up to SAMPLE_EVERY.
READ_EVERY = 0.02


@dataclass
class TestRun:
    """One test in a worker, from the command to its last report (or its end)."""

    item: pytest.Item
    timeout: float | None
    timeout_source: str
    started: float = 0.0  # monotonic, when the worker began the test
    reports: list[pytest.TestReport] = field(default_factory=list)
    done: bool = False
    verdict: Status | None = None  # HANG, SPINNING, CRASH... when the test did not finish
    phase: str = ""  # the phase that was running when the verdict was reached
    incident: Incident | None = None
    ending: Ending | None = None
    killed: list[tuple[int, str]] = field(default_factory=list)
    leftovers: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_request: tuple[str, int | None] | None = None
    captured: dict[str, str] = field(default_factory=dict)  # of the unfinished phase
    partial_message: bool = False  # the worker died while sending a report


class Worker:
    """One worker process. `run()` hands it a test; `stop()` ends it cleanly."""

    def __init__(self, controller: Any, method: str, why: str, serial: int) -> None:
        self.controller = controller
        self.config: pytest.Config = controller.config
        self.run_dir: RunDir = controller.run_dir
        self.method = method
        self.why = why  # why a fresh interpreter rather than a fork
        self.serial = serial
        self.pid = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.commands: Sender | None = None
        self.commands_fd = -1
        self.messages_fd = -1
        self.doorbell_fd = -1
        self._selector: selectors.BaseSelector | None = None
        self._read_every = READ_EVERY
        self.queued_until = -1  # the index of the last test sent
        self.receiver = Receiver()
        self.pidfd: int | None = None
        self.wait_status: int | None = None
        self.ready = False
        self.tests = 0
        self.log_path = ""
        self.capture_fds: dict[str, int] = {}
        self._watch: Watch | None = None
        self._watch_started = 0.0
        self._sentinel: Sentinel | None = None
        self._phase_seen: str | None = None  # the phase the worker's stack showed
        self.stopped_leftovers: list[tuple[int, str]] = []
        self.sent: set[str] = set()  # node ids queued in this worker
        self.queue: list[str] = []  # sent and not done, in order: the first one runs
        # When each test began: the worker starts a test when it is idle and gets it, or when
        # it has finished the one before (its "done" arrives).
        self.started_at: dict[str, float] = {}
        self.pending: list[dict[str, Any]] = []  # messages about tests not yet waited for

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        commands_read, commands_write = os.pipe()
        messages_read, messages_write = os.pipe()
        doorbell_read, doorbell_write = os.pipe()
        widen(messages_write)
        theirs = (commands_read, messages_write, doorbell_write)
        if self.method == "fork":
            try:
                self._fork(*theirs, ours=(commands_write, messages_read, doorbell_read))
            except OSError as exc:  # EAGAIN/ENOMEM: a fresh interpreter may still fit
                self.method, self.why = "spawn", f"fork() failed: {exc}"
        if self.method == "spawn":
            self._spawn(*theirs)
        for fd in theirs:
            os.close(fd)
        for fd in (messages_read, doorbell_read):
            os.set_blocking(fd, False)  # read what is there, never wait on it
        self.commands_fd, self.messages_fd = commands_write, messages_read
        self.doorbell_fd = doorbell_read
        self.commands = Sender(commands_write)
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(self.pid)
        self._selector = selectors.DefaultSelector()
        self._selector.register(doorbell_read, selectors.EVENT_READ, "doorbell")
        if self.pidfd is not None:
            self._selector.register(self.pidfd, selectors.EVENT_READ, "exit")
        self._watch_started = time.monotonic()
        self.controller.kernel()  # opened now: a crash's kernel record comes after

    @property
    def watch(self) -> Watch:
        """The supervision core's view of this worker's tree, made when first needed."""
        if self._watch is None:
            from numdoctor.supervise.watch import Watch

            self._watch = Watch(
                self.pid, self.run_dir, started=self._watch_started, subreaper=False,
                main_role="pytest worker", kernel=self.controller.kernel(),
                hide=lambda frame: frame.kind == "python" and is_harness(frame.file),
                on_stacks=self._note_phase)
        return self._watch

    def _fork(self, commands_read: int, messages_write: int, doorbell_write: int, *,
              ours: tuple[int, ...]) -> None:
        from numdoctor.pytest_plugin._serve import forked_worker

        self._flush_terminal()
        # Objects the child inherits are shared copy-on-write until written; a garbage
        # collection in the child would write to (and copy) every one of them. Frozen, the
        # collector leaves them alone: the tests run several times faster.
        gc.freeze()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a threaded process; the pool threads that
            # make that dangerous are what the controller checked.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pid = os.fork()
            except BaseException:
                gc.unfreeze()
                raise
        if pid == 0:  # the worker: never returns
            for fd in ours:
                os.close(fd)
            forked_worker(self.controller.session, commands_read, messages_write,
                          doorbell_write, self.run_dir)
        gc.unfreeze()
        self.pid = pid

    def _spawn(self, commands_read: int, messages_write: int, doorbell_write: int) -> None:
        import json

        spec = {"commands": commands_read, "messages": messages_write,
                "doorbell": doorbell_write,
                "run_dir": self.run_dir.path, "dump_signal": self.run_dir.dump_signal}
        self.log_path = os.path.join(self.run_dir.path, f"worker-{self.serial}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.controller.spawn_command(json.dumps(spec), self.serial),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(commands_read, messages_write, doorbell_write),
                cwd=str(self.config.invocation_params.dir), start_new_session=True)
        self.pid = self.process.pid

    def _flush_terminal(self) -> None:
        # Whatever sits in our buffers would be written a second time by the child.
        with contextlib.suppress(Exception):
            self.config.get_terminal_writer().flush()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    @property
    def alive(self) -> bool:
        return self.pid != 0 and self.wait_status is None

    # -- run one test ------------------------------------------------------------------------
    def _command(self, index: int, item: pytest.Item, nextitem: pytest.Item | None, *,
                 one_shot: bool) -> dict[str, Any]:
        """Queue a test in the worker (it runs its queue in order): the command to send."""
        items = self.controller.session.items
        next_index = -1
        if nextitem is not None and index + 1 < len(items) and items[index + 1] is nextitem:
            next_index = index + 1
        self.sent.add(item.nodeid)
        self.queue.append(item.nodeid)
        self.queued_until = max(self.queued_until, index)
        if len(self.queue) == 1 and self.ready:
            self.started_at[item.nodeid] = time.monotonic()  # it starts at once
        return {
            "type": "run", "index": index, "nodeid": item.nodeid,
            "next_index": next_index,
            "next_nodeid": nextitem.nodeid if nextitem is not None else None,
            "location": _location(item),
            "capture": self.method == "spawn" and not self.capture_fds and len(self.sent) == 1,
            "forget_parent_fixtures": one_shot and self.method == "fork",
        }

    def run(self, run: TestRun, index: int, nextitem: pytest.Item | None, *,
            one_shot: bool, ahead: Sequence[tuple[int, pytest.Item, pytest.Item | None]] = ()
            ) -> TestRun:
        """Run one test and wait for its end. `ahead`: tests after it, queued at once so that
        the worker runs them while this process logs this one's reports."""
        assert self.commands is not None
        self.tests += 1
        commands = []
        if run.item.nodeid not in self.sent:
            commands.append(self._command(index, run.item, nextitem, one_shot=one_shot))
        commands += [self._command(*entry, one_shot=False) for entry in ahead
                     if entry[1].nodeid not in self.sent]
        if commands:
            with contextlib.suppress(OSError):
                self.commands.send_many(commands)
        limit = STARTUP_LIMIT[self.method] if not self.ready else run.timeout
        # What the worker already said about this test, while we were busy with the last.
        pending, self.pending = self.pending, []
        for message in pending:
            if run.done or run.verdict is not None:
                self.pending.append(message)
            else:
                self._route(run, message)
        if not run.done and run.verdict is None:
            self._wait(run, first_limit=limit)
        return run

    def _wait(self, run: TestRun, first_limit: float | None) -> None:
        assert self._selector is not None
        sent = time.monotonic()
        deadline = None if first_limit is None else sent + first_limit
        # A test that ends within the first quarter of its timeout (most do, by far) costs
        # no sample; one that lasts is sampled often enough to tell idle from busy.
        every = SAMPLE_EVERY if run.timeout is None else min(SAMPLE_EVERY, run.timeout / 4)
        next_sample = sent + every
        while not run.done and run.verdict is None:
            now = time.monotonic()
            if not run.started:
                run.started = self.started_at.get(run.item.nodeid, 0.0)
            if run.started:
                deadline = None if run.timeout is None else run.started + run.timeout
            wait = min(next_sample - now, self._read_every)
            if deadline is not None:
                wait = min(wait, deadline - now)
            if self.pidfd is None:  # no pidfd (old kernel): poll for the exit
                wait = min(wait, 0.02)
            for key, _ in self._selector.select(max(0.0, wait)):
                if key.data == "doorbell" and not _empty(self.doorbell_fd):
                    self._selector.unregister(self.doorbell_fd)  # every writer is gone
            heard = self._read(run)
            self._read_every = READ_EVERY if heard else min(2 * self._read_every,
                                                            SAMPLE_EVERY)
            if run.done or run.verdict is not None:
                break
            status = tree.reap([self.pid]).get(self.pid)
            if status is not None:
                self.wait_status = status
                self._read(run)  # what it sent last
                if not run.done:
                    self._crashed(run)
                break
            now = time.monotonic()
            if now >= next_sample:
                self.watch.monitor.sample(now)
                next_sample = now + every
                if run.started and self._look_for_deadlock(run, now):
                    break
            if deadline is not None and now >= deadline:
                self._hung(run, starting=not run.started)
                break

    def _read(self, run: TestRun | None) -> bool:
        """Take in what the pipe holds (a grandchild may hold it open after the worker's
        exit: read until it is empty, not until end of file); whether anything came."""
        if self.messages_fd < 0:
            return False
        heard = False
        while True:
            try:
                data = os.read(self.messages_fd, 1 << 20)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            heard = True
            for message in self.receiver.feed(data):
                if run is None:
                    self._handle_idle(message)
                elif run.done or run.verdict is not None:
                    self.pending.append(message)  # the next test's, already under way
                else:
                    self._route(run, message)
        return heard

    def _route(self, run: TestRun, message: dict[str, Any]) -> None:
        nodeid = message.get("nodeid")
        if nodeid is None and "data" in message:
            data = message["data"]
            nodeid = data.get("nodeid") if isinstance(data, dict) else data.nodeid
        if nodeid is None or nodeid == run.item.nodeid:
            self._handle(run, message)
        else:
            self.pending.append(message)

    def _handle(self, run: TestRun, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._ready(message)
        elif kind == "capture":
            self._open_capture(message.get("capture") or {})
        elif kind == "report":
            report = message["data"]
            if not isinstance(report, pytest.TestReport):
                report = self.config.hook.pytest_report_from_serializable(
                    config=self.config, data=report)
            self.controller.log_report(run, self, report)
            if message.get("ack"):
                session = self.controller.session
                self._send({"type": "ack", "shouldfail": session.shouldfail,
                            "shouldstop": session.shouldstop})
        elif kind == "done":
            run.done = True
            self._finished(run.item.nodeid, message)
            run.leftovers = [(pid, command) for pid, command in message.get("leftovers", [])]
        elif kind == "warning":
            self.controller.record_warning(run.item, message["warning"])
        elif kind == "exit":
            run.exit_request = (message["reason"], message.get("returncode"))
        elif kind == "interrupted":
            run.errors.append("the test was interrupted (KeyboardInterrupt)")
        elif kind in ("internal-error", "collect-error", "not-run"):
            run.errors.append(message.get("text", ""))
            if kind == "not-run":
                run.done = True
                self._finished(run.item.nodeid, message)
        else:
            self._handle_idle(message)

    def _ready(self, message: dict[str, Any]) -> None:
        self.ready = True
        if self.queue:
            self.started_at[self.queue[0]] = message.get("at") or time.monotonic()

    def _finished(self, nodeid: str, message: dict[str, Any]) -> None:
        if nodeid in self.queue:
            self.queue.remove(nodeid)
        if self.queue:
            self.started_at[self.queue[0]] = message.get("ended") or time.monotonic()

    def _handle_idle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._ready(message)
        elif kind == "skipped":
            self._finished(message.get("nodeid", ""), message)
        elif kind == "stopped":
            self.stopped_leftovers = [(pid, command)
                                      for pid, command in message.get("leftovers", [])]
        elif kind in ("internal-error", "collect-error"):
            self.controller.worker_errors.append(message.get("text", ""))

    def _send(self, message: dict[str, Any]) -> None:
        if self.commands is not None:
            with contextlib.suppress(OSError):
                self.commands.send(message)

    def _open_capture(self, fds: dict[str, int]) -> None:
        """Spawned worker: hold its capture files open, so they outlive a crash."""
        if not fds:
            return
        for name, fd in fds.items():
            with contextlib.suppress(OSError):
                self.capture_fds[name] = os.open(f"/proc/{self.pid}/fd/{fd}", os.O_RDONLY)
        self._send({"type": "capture-held"})

    # -- when a test does not finish ---------------------------------------------------------
    def phase(self, run: TestRun) -> str:
        """The phase that was running: the later of what the reports received say (the one
        after the last) and what the worker's stack showed (passed reports wait for the test's
        end, so a test stuck in its call may have sent none)."""
        if not run.reports:
            by_reports = "setup"
        elif run.reports[-1].when == "setup":
            setup_only = self.config.getoption("setuponly", False)
            by_reports = "call" if run.reports[-1].passed and not setup_only else "teardown"
        else:
            by_reports = "teardown"
        seen = self._phase_seen
        return seen if seen is not None and _ORDER[seen] > _ORDER[by_reports] else by_reports

    def _note_phase(self, stacks: dict[int, ProcessStacks]) -> None:
        process = stacks.get(self.pid)
        main = next((t for t in process.threads if t.native_id == self.pid),
                    None) if process is not None else None
        if main is None and process is not None and process.threads:
            main = process.threads[-1]  # faulthandler lists the main thread last
        if main is not None:
            self._phase_seen = phase_in(main.frames) or self._phase_seen

    def _look_for_deadlock(self, run: TestRun, now: float) -> bool:
        """A proven deadlock fails the test now, without waiting for its deadline."""
        if self._sentinel is None:
            from numdoctor.supervise.sentinel import Sentinel

            self._sentinel = Sentinel(self.watch)
        proof = self._sentinel.check(now)
        if proof is None:
            return False
        assert self.watch is not None
        run.phase = self.phase(run)  # the sentinel's look saw the stack
        run.verdict = Status.DEADLOCK
        run.captured = self.captured()
        elapsed = time.monotonic() - run.started
        try:
            run.incident = self.watch.incident(Status.DEADLOCK, window=proof.facts.window,
                                               silent_for=elapsed, elapsed=elapsed,
                                               timeout=None,
                                               messages=self._message_findings(run),
                                               examination=proof)
        except Exception as exc:
            run.errors.append(f"the stack dump failed: {type(exc).__name__}: {exc}")
        self._kill(run)
        return True

    def _hung(self, run: TestRun, *, starting: bool) -> None:
        """The deadline passed: judge, dump and kill the whole tree. The verdict is fixed now
        and the phase at the dump: a dump may wake the test (a signal cuts a sleep short), and
        what it reports afterwards must not turn a hang into a pass."""
        detected = time.monotonic()
        window = min(10.0, run.timeout or 10.0)
        self.watch.monitor.sample(detected)
        idle = self.watch.monitor.idle_since(detected - window)
        run.verdict = Status.SPINNING if idle is False else Status.HANG
        elapsed = detected - (run.started or detected)
        run.captured = self.captured()
        try:
            run.incident = self.watch.incident(run.verdict, window=window, silent_for=elapsed,
                                               elapsed=elapsed, timeout=None,
                                               messages=self._message_findings(run))
        except Exception as exc:  # never let a failed dump keep the test running
            run.errors.append(f"the stack dump failed: {type(exc).__name__}: {exc}")
        run.phase = self.phase(run)
        self._kill(run)
        if starting:
            run.errors.append(f"the worker did not start the test within "
                              f"{STARTUP_LIMIT[self.method]:g} s")

    def _crashed(self, run: TestRun) -> None:
        assert self.wait_status is not None
        _fatal, threads, _text = self.run_dir.fatal_dump(self.pid)
        crashing = next((t for t in threads if t.current), threads[0] if threads else None)
        if crashing is not None:
            self._phase_seen = phase_in(crashing.frames)
        run.phase = self.phase(run)
        run.verdict = Status.CRASH
        run.partial_message = self.receiver.partial
        run.captured = self.captured()
        hits = self._hits(run)
        run.ending = self.watch.ending(self.wait_status, hits=hits,
                                       messages=self._message_findings(run, hits))
        if run.ending.status not in (Status.CRASH, Status.OOM, Status.SIGNAL):
            run.verdict = run.ending.status
        self._kill(run)  # what the worker started may outlive it

    def _hits(self, run: TestRun) -> dict[str, list[Any]]:
        from numdoctor.rules.messages import MessageScanner

        scanner = MessageScanner()
        text = "\n".join([*run.captured.values(), self.log_text()])
        scanner.feed(text.encode("utf-8", "replace"))
        scanner.finish()
        return scanner.hits

    def _message_findings(self, run: TestRun,
                          hits: dict[str, list[Any]] | None = None) -> list[Any]:
        from numdoctor.rules.messages import findings as message_findings
        return message_findings(hits if hits is not None else self._hits(run),
                                self.watch.message_context())

    def _kill(self, run: TestRun) -> None:
        killed = self.watch.kill()
        run.killed = [(pid, killed.commands.get(pid, "?")) for pid in killed.killed]
        if self.pid in killed.statuses:
            self.wait_status = killed.statuses[self.pid]
        elif self.wait_status is None:
            self._reap(block=True)
        self._close()

    def captured(self) -> dict[str, str]:
        """What the test wrote in the phase that did not finish (fd-level capture only)."""
        found: dict[str, str] = {}
        if self.method == "fork":
            capman = self.config.pluginmanager.getplugin("capturemanager")
            with contextlib.suppress(Exception):
                out, err = capman.read_global_capture()
                found = {"stdout": out, "stderr": err}
        else:
            for name, fd in self.capture_fds.items():
                with contextlib.suppress(OSError):
                    size = os.fstat(fd).st_size
                    found[name] = os.pread(fd, size, 0).decode("utf-8", "replace")
        return {name: text for name, text in found.items() if text}

    def log_text(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    # -- end ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to tear down what is still set up and exit; kill it if it does not."""
        if not self.alive:
            self._close()
            return
        self._send({"type": "stop"})
        deadline = time.monotonic() + STOP_LIMIT
        while time.monotonic() < deadline:
            self._reap(block=False)
            if self.wait_status is not None:
                break
            if self.pidfd is not None:
                selectors_wait(self.pidfd, 0.1)
            else:
                time.sleep(0.02)
        self._read(None)
        if self.wait_status is None:
            killed = self.watch.kill()
            self.stopped_leftovers += [(pid, killed.commands.get(pid, "?"))
                                       for pid in killed.killed if pid != self.pid]
            self._reap(block=True)
        self._close()

    def kill(self) -> None:
        """End the worker at once (the session is being interrupted)."""
        if self.alive:
            self.watch.kill()
            self._reap(block=True)
        self._close()

    def _reap(self, *, block: bool) -> None:
        if self.wait_status is not None or not self.pid:
            return
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        self.wait_status = status
        if self.process is not None:  # we reaped it: tell Popen, or it warns at exit
            self.process.returncode = from_wait_status(status).code

    def _close(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in (self.commands_fd, self.messages_fd, self.doorbell_fd, self.pidfd,
                   *self.capture_fds.values()):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.commands_fd = self.messages_fd = self.doorbell_fd = -1
        self.pidfd = None
        self.capture_fds = {}
        self.commands = None

    def where(self) -> str:
        if self.method == "fork":
            return f"a forked pytest worker (pid {self.pid})"
        return f"a fresh pytest interpreter (pid {self.pid}), not a fork: {self.why}"


def _location(item: pytest.Item) -> tuple[str, int | None, str] | None:
    try:
        return item.location
    except Exception:  # pytest's own log of the test says what is wrong with it
        return None


def _empty(fd: int) -> bool:
    """Read a pipe empty; False at end of file."""
    while True:
        try:
            if not os.read(fd, 4096):
                return False
        except BlockingIOError:
            return True
        except OSError:
            return False


_ORDER = {"setup": 0, "call": 1, "teardown": 2}
_RUNNER = ("/_pytest/runner.py", "\\_pytest\\runner.py")
_HOOKS = {"pytest_runtest_setup": "setup", "pytest_runtest_call": "call",
          "pytest_runtest_teardown": "teardown"}


def phase_in(frames: list[Frame]) -> str | None:
    """The test phase a worker's main thread is in: the innermost of pytest's own
    setup/call/teardown hooks on its stack (innermost frame first)."""
    for frame in frames:
        if frame.kind == "python" and frame.file.endswith(_RUNNER):
            phase = _HOOKS.get(frame.function.rsplit(".", 1)[-1])
            if phase is not None:
                return phase
    return None


def selectors_wait(fd: int, timeout: float) -> None:
    import select

    select.select([fd], [], [], timeout)


def unpickled_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    def load(blob: bytes | None) -> Any:
        try:
            return pickle.loads(blob) if blob else None
        except Exception:
            return None

    message = load(data.get("message"))
    category = load(data.get("category"))
    if not (isinstance(category, type) and issubclass(category, Warning)):
        category = UserWarning
    if not isinstance(message, Warning):
        try:
            message = category(data.get("text", ""))
        except Exception:
            category, message = UserWarning, UserWarning(data.get("text", ""))
    return warnings.WarningMessage(message, category, data.get("filename", ""),
                                   data.get("lineno", 0), None, data.get("line"))


