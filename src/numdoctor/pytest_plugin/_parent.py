"""The pytest process's side of isolation: one subprocess per test, watched from outside.

A test stuck in C code that holds the GIL cannot be interrupted from inside its process
(pytest-timeout's signal method waits for it to return; its thread method dumps and then ends
the whole session). So each test runs in a subprocess and the pytest process waits for its
reports with a deadline. When the deadline passes, the subprocess's faulthandler is asked for
every thread's Python stack (a signal: answered by C code, GIL or not), py-spy adds native
frames, and the whole process tree is killed. When the subprocess dies, its wait status,
faulthandler traceback and output explain how.

The subprocess is a fork of the pytest process (milliseconds, and the collected test and the
fixtures set up so far come along) unless a GNU OpenMP pool runs in the pytest process: a
forked child would deadlock in it (FORK001), so a fresh interpreter is spawned instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from typing import Any

import pytest

from numdoctor.findings import Finding, sort_findings
from numdoctor.pytest_plugin import MARKER
from numdoctor.pytest_plugin._channel import Receiver
from numdoctor.pytest_plugin._diagnosis import (
    KernelEvents,
    Stacks,
    dump_stacks,
    explain_crash,
    faulthandler_path,
    message_findings,
)
from numdoctor.pytest_plugin._failure import (
    failed_report,
    format_findings,
    passed_report,
    tail,
)
from numdoctor.pytest_plugin._processes import Killed, kill_tree, preload

# Seconds a subprocess may take to start the test; past that it is treated as hung. A fork
# starts in milliseconds (unless fork-unsafe state deadlocks it); a fresh interpreter imports
# and collects the test's module first.
_STARTUP_LIMIT = {"fork": 60.0, "spawn": 300.0}
# Seconds a subprocess may take to exit after its last report.
_EXIT_LIMIT = {"fork": 10.0, "spawn": 60.0}


class IsolationRunner:
    """Registered when a numdoctor isolation option or marker is in use."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hang_timeout: float | None = config.getoption("numdoctor_hang_timeout")
        self.isolate_all = bool(self.hang_timeout) or config.getoption("numdoctor_isolate")
        self.start_method: str = config.getoption("numdoctor_start_method")
        self.run_dir = tempfile.mkdtemp(prefix="numdoctor-pytest-")
        self.kernel = KernelEvents()
        self.fork_hazard: Finding | None = None
        self._threads_without_hazard: frozenset[str] | None = None
        from numdoctor.pytest_plugin._child import ReportStream

        config.pluginmanager.register(ReportStream(), ReportStream.NAME)
        preload()
        self.methods: Counter[str] = Counter()
        self.incidents: list[str] = []
        self.spawned = 0

    # -- which tests, which method -------------------------------------------------------------
    def settings(self, item: pytest.Item) -> tuple[bool, float | None, str]:
        marker = item.get_closest_marker(MARKER)
        if marker is not None and marker.kwargs.get("hang_timeout") is not None:
            return True, float(marker.kwargs["hang_timeout"]), \
                f"hang_timeout of @pytest.mark.{MARKER}"
        if marker is not None or self.isolate_all:
            return True, self.hang_timeout, "--numdoctor-hang-timeout"
        return False, None, ""

    def choose_method(self) -> tuple[str, str]:
        """("fork" | "spawn", why spawn)."""
        if self.start_method != "auto":
            return self.start_method, f"--numdoctor-start-method {self.start_method}"
        if self.fork_hazard is not None:  # pools never stop: once seen, always there
            return "spawn", self._hazard_text()
        # A started pool has threads of its own: while the set of threads is one already
        # checked, there is nothing new to look at (reading the memory maps costs ~ms).
        try:
            threads = frozenset(os.listdir("/proc/self/task"))
        except OSError:
            threads = None
        if threads is not None and threads == self._threads_without_hazard:
            return "fork", ""
        from numdoctor.protection.forkcheck import fork_hazard

        self.fork_hazard = fork_hazard()
        if self.fork_hazard is not None:
            return "spawn", self._hazard_text()
        self._threads_without_hazard = threads
        return "fork", ""

    def _hazard_text(self) -> str:
        assert self.fork_hazard is not None
        where = self.fork_hazard.evidence[0] if self.fork_hazard.evidence else ""
        return ("FORK001: a GNU OpenMP pool runs in the pytest process and a forked child "
                f"would deadlock ({where})")

    # -- hooks ---------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        isolated, timeout, timeout_source = self.settings(item)
        if not isolated:
            return None
        self.kernel.start()
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        method, why = self.choose_method()
        test = IsolatedTest(self, item, method, why, timeout, timeout_source)
        test.run()
        self.methods[test.method] += 1
        self._teardown_parent_fixtures(item, nextitem)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        if test.exit_request is not None:
            reason, returncode = test.exit_request
            pytest.exit(reason, returncode)
        return True

    def _teardown_parent_fixtures(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Fixtures the pytest process itself set up (for earlier tests that ran in it) are
        torn down here, where they live, once the next test no longer needs them."""
        state = getattr(item.session, "_setupstate", None)
        if state is None or not getattr(state, "stack", None):
            return
        if item.session.shouldfail or item.session.shouldstop:
            nextitem = None
        capman = self.config.pluginmanager.getplugin("capturemanager")

        def teardown() -> None:
            # Captured like any teardown: printed output joins the report's sections.
            with capman.item_capture("teardown", item) if capman else contextlib.nullcontext():
                state.teardown_exact(nextitem)

        call = pytest.CallInfo.from_call(teardown, when="teardown",
                                         reraise=(pytest.exit.Exception, KeyboardInterrupt))
        if call.excinfo is not None:
            report = item.ihook.pytest_runtest_makereport(item=item, call=call)
            item.ihook.pytest_runtest_logreport(report=report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.methods:
            return
        terminalreporter.write_sep("-", "numdoctor isolation")
        forked, spawned = self.methods.get("fork", 0), self.methods.get("spawn", 0)
        parts = []
        if forked:
            parts.append(f"{forked} in forked subprocesses")
        if spawned:
            parts.append(f"{spawned} in fresh interpreters")
        terminalreporter.write_line(f"tests run isolated: {', '.join(parts)}")
        if spawned and self.fork_hazard is not None and self.start_method == "auto":
            terminalreporter.write_line(f"  fresh interpreters because {self._hazard_text()}")
        from numdoctor.redact import redact_text

        for line in self.incidents:
            terminalreporter.write_line(redact_text(line))

    def pytest_unconfigure(self) -> None:
        self.kernel.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- spawned interpreters ------------------------------------------------------------------
    def spawn_command(self, spec: dict[str, Any]) -> list[str]:
        import json

        command = [sys.executable, *subprocess._args_from_interpreter_flags()]
        script = sys.argv[0] if sys.argv else ""
        if os.path.basename(script) in ("pytest", "py.test") and os.path.isfile(script):
            command.append(script)  # keeps sys.path[0] what the `pytest` script gives
        else:
            command += ["-m", "pytest"]
        command += list(self.config.invocation_params.args)
        self.spawned += 1
        command += ["--numdoctor-child", json.dumps(spec),
                    "-o", f"cache_dir={os.path.join(self.run_dir, 'cache')}"]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            with contextlib.suppress(Exception):
                command += ["--basetemp",
                            str(factory.getbasetemp() / f"numdoctor-spawn-{self.spawned}")]
        if self.config.pluginmanager.hasplugin("xdist"):
            command += ["-n", "0"]  # one test, no workers of its own
        return command


class IsolatedTest:
    """One test in one subprocess, from start to the last report."""

    def __init__(self, runner: IsolationRunner, item: pytest.Item, method: str, why: str,
                 timeout: float | None, timeout_source: str) -> None:
        self.runner = runner
        self.item = item
        self.config = item.config
        self.method = method
        self.why = why
        self.timeout = timeout
        self.timeout_source = timeout_source
        self.receiver = Receiver()
        self.pid = 0
        self.process: subprocess.Popen | None = None
        self.read_fd = -1
        self.pidfd: int | None = None
        self.log_path = ""
        self.capture_fds: dict[str, int] = {}
        self.captures_output = False  # the test's output went to pytest's capture files
        self.started = False
        self.done = False
        self.hung = False
        self.lingered = False
        self.wait_status: int | None = None
        self.deadline: float | None = None
        self.reports: list[pytest.TestReport] = []
        self.errors: list[str] = []
        self.leftovers: list[Killed] = []
        self.killed: list[Killed] = []
        self.stacks: Stacks | None = None
        self.exit_request: tuple[str, int | None] | None = None
        self.interrupted_by = ""
        self.t0 = time.time()

    # -- start ---------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._start()
            self._watch()
        except BaseException as exc:
            self._stop_everything()
            if isinstance(exc, KeyboardInterrupt | SystemExit | pytest.exit.Exception):
                raise
            # pytest-timeout in the pytest process, or a bug of ours: fail this test only.
            self.interrupted_by = f"{type(exc).__name__}: {exc}"
        finally:
            self._close_fds()
        self._conclude()

    def _start(self) -> None:
        if self.method == "fork":
            try:
                self._fork()
                return
            except OSError as exc:  # EAGAIN/ENOMEM: a fresh interpreter may still fit
                self.method, self.why = "spawn", f"fork() failed: {exc}"
        self._spawn()

    def _fork(self) -> None:
        from numdoctor.pytest_plugin._child import forked_child

        read_fd, write_fd = os.pipe()
        self._flush_terminal()
        # Objects the child inherits are shared copy-on-write until written; a garbage
        # collection in the child would write to (and copy) every one of them. Frozen, the
        # collector leaves them alone: the test runs several times faster.
        gc.freeze()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a threaded process; the pool threads that
            # make that dangerous are what choose_method() checked.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pid = os.fork()
            except BaseException:
                gc.unfreeze()
                os.close(read_fd)
                os.close(write_fd)
                raise
        if pid != 0:
            gc.unfreeze()
        if pid == 0:  # the child: never returns
            try:
                os.close(read_fd)
            finally:
                forked_child(self.item, write_fd, self.runner.run_dir)
        os.close(write_fd)
        self.pid, self.read_fd = pid, read_fd
        self._open_pidfd()
        self.deadline = time.monotonic() + _STARTUP_LIMIT["fork"]

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        ack_read, self.ack_fd = os.pipe()
        spec = {"write": write_fd, "ack": ack_read, "nodeid": self.item.nodeid,
                "path": str(self.item.path), "run_dir": self.runner.run_dir}
        self.log_path = os.path.join(self.runner.run_dir, f"spawn-{self.runner.spawned + 1}.log")
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.runner.spawn_command(spec), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, pass_fds=(write_fd, ack_read),
                    cwd=str(self.config.invocation_params.dir), start_new_session=True)
        finally:
            os.close(write_fd)
            os.close(ack_read)
        self.pid, self.read_fd = self.process.pid, read_fd
        self._open_pidfd()
        self.deadline = time.monotonic() + _STARTUP_LIMIT["spawn"]

    def _flush_terminal(self) -> None:
        # Whatever sits in our buffers would be written a second time by the child.
        with contextlib.suppress(Exception):
            self.config.get_terminal_writer().flush()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    def _open_pidfd(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(self.pid)

    # -- watch ---------------------------------------------------------------------------------
    def _watch(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.read_fd, selectors.EVENT_READ, "messages")
            if self.pidfd is not None:
                selector.register(self.pidfd, selectors.EVENT_READ, "exit")
            while self.wait_status is None:
                remaining = None if self.deadline is None else self.deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if self.done:  # finished, but does not exit
                        self.lingered = True
                        self.killed = kill_tree(self.pid, session=self.pid, include_root=True)
                    else:
                        self._hang()
                    self._reap(block=True)
                    break
                wait = remaining
                if self.pidfd is None:  # no pidfd (old kernel): poll for the exit
                    wait = 0.02 if wait is None else min(wait, 0.02)
                for key, _ in selector.select(wait):
                    if key.data == "messages" and not self._read():
                        selector.unregister(self.read_fd)  # EOF: every writer is gone
                self._reap(block=False)
        self._drain()

    def _read(self) -> bool:
        """Read what the pipe holds; False at end of file."""
        try:
            data = os.read(self.read_fd, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        for message in self.receiver.feed(data):
            self._handle(message)
        return True

    def _drain(self) -> None:
        """After the exit: what the child sent last (a grandchild may keep the pipe open, so
        read until it is empty, not until end of file)."""
        if self.read_fd < 0:
            return
        flags = fcntl.fcntl(self.read_fd, fcntl.F_GETFL)
        fcntl.fcntl(self.read_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        while True:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            for message in self.receiver.feed(data):
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "start":
            self.started = True
            self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
            self.captures_output = bool(message.get("capture")) or (
                self.method == "fork" and self.config.getoption("capture") == "fd")
            self._open_capture(message.get("capture") or {})
        elif kind == "report":
            report = self.config.hook.pytest_report_from_serializable(
                config=self.config, data=message["data"])
            self._log(report)
        elif kind == "done":
            self.done = True
            self.leftovers = [Killed(pid, command) for pid, command in message["leftovers"]]
            self.deadline = time.monotonic() + _EXIT_LIMIT[self.method]
        elif kind == "warning":
            self._record_warning(message["warning"])
        elif kind == "exit":
            self.exit_request = (message["reason"], message.get("returncode"))
        elif kind == "interrupted":
            self.errors.append("the test was interrupted (KeyboardInterrupt)")
        elif kind in ("internal-error", "collect-error", "not-run"):
            self.errors.append(message.get("text", ""))

    def _record_warning(self, data: dict[str, Any]) -> None:
        def unpickled(blob: bytes | None) -> Any:
            try:
                return pickle.loads(blob) if blob else None
            except Exception:
                return None

        message = unpickled(data.get("message"))
        category = unpickled(data.get("category"))
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category = UserWarning
        if not isinstance(message, Warning):
            try:
                message = category(data.get("text", ""))
            except Exception:
                category, message = UserWarning, UserWarning(data.get("text", ""))
        record = warnings.WarningMessage(message, category, data.get("filename", ""),
                                         data.get("lineno", 0), None, data.get("line"))
        self.config.hook.pytest_warning_recorded.call_historic(kwargs=dict(
            warning_message=record, nodeid=self.item.nodeid, when="runtest", location=None))

    def _open_capture(self, fds: dict[str, int]) -> None:
        """Spawned child: hold its capture files open, so they outlive a crash."""
        if self.process is None:
            return
        for name, fd in fds.items():
            with contextlib.suppress(OSError):
                self.capture_fds[name] = os.open(f"/proc/{self.pid}/fd/{fd}", os.O_RDONLY)
        with contextlib.suppress(OSError):
            os.write(self.ack_fd, b"k")

    def _reap(self, *, block: bool) -> None:
        if self.wait_status is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        self.wait_status = status
        if self.process is not None:  # we reaped it: tell Popen, or it warns at exit
            self.process.returncode = os.waitstatus_to_exitcode(status)

    def _hang(self) -> None:
        self.hung = True
        try:  # dump before killing: the dumpers cannot read a dead process
            self.stacks = dump_stacks(self.runner.run_dir, self.pid, armed=self.started)
        except Exception as exc:  # never let a failed dump keep the test running
            self.stacks = Stacks(notes=[f"the stack dump failed: {type(exc).__name__}: {exc}"])
        self.killed = kill_tree(self.pid, session=self.pid, include_root=True)

    def _stop_everything(self) -> None:
        if self.pid and self.wait_status is None:
            with contextlib.suppress(Exception):
                self.killed = kill_tree(self.pid, session=self.pid, include_root=True)
            with contextlib.suppress(Exception):
                self._reap(block=True)

    def _close_fds(self) -> None:
        for fd in (self.read_fd, self.pidfd, getattr(self, "ack_fd", None)):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd, self.pidfd = -1, None

    # -- reports -------------------------------------------------------------------------------
    def _where(self) -> str:
        if self.method == "fork":
            return f"a forked subprocess (pid {self.pid})"
        return f"a fresh interpreter (pid {self.pid}), not a fork: {self.why}"

    def _properties(self) -> list[tuple[str, object]]:
        return [("numdoctor_isolation", self.method)]

    def _log(self, report: pytest.TestReport) -> None:
        report.user_properties = [*report.user_properties, *self._properties()]
        if report.failed:
            report.sections.append(("numdoctor", f"ran in {self._where()}"))
        self.reports.append(report)
        self.item.ihook.pytest_runtest_logreport(report=report)

    def _phase(self) -> str:
        """The phase that was running: the one after the last report received."""
        if not self.reports:
            return "setup"
        last = self.reports[-1]
        if last.when == "setup":
            setup_only = self.config.getoption("setuponly", False)
            return "call" if last.passed and not setup_only else "teardown"
        return "teardown"

    def _captured(self) -> dict[str, str]:
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
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.capture_fds = {}
        return {name: text for name, text in found.items() if text}

    def _spawn_log(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def _conclude(self) -> None:
        try:
            self._conclude_reports()
        finally:
            for path in (faulthandler_path(self.runner.run_dir, self.pid), self.log_path):
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            for fd in self.capture_fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _conclude_reports(self) -> None:
        nodeid = self.item.nodeid
        if self.done and not self.hung and self.wait_status is not None:
            if self.leftovers:
                self.runner.incidents.append(
                    f"killed {len(self.leftovers)} process(es) {nodeid} left running: "
                    + ", ".join(k.describe() for k in self.leftovers))
            if self.lingered:
                self.runner.incidents.append(
                    f"killed the subprocess of {nodeid}: it did not exit within "
                    f"{_EXIT_LIMIT[self.method]:g} s of its last report")
            if self.reports or not self.errors:
                return
        signaled = self.wait_status is not None and os.WIFSIGNALED(self.wait_status)
        phase = self._phase()
        captured = self._captured()
        sections = [(f"Captured {name} {phase}", text) for name, text in captured.items()]
        log = self._spawn_log()
        # A spawned pytest's own output (its header...) says nothing once the test started
        # with its output captured; before that, or without capture, it may say everything.
        shown_log = "" if self.started and self.captures_output else log
        if self.hung:
            text, message = self._hang_text(phase, captured, log, shown_log)
            self.runner.incidents.append(f"{nodeid} hung: {message}")
        elif self.interrupted_by:
            message = f"numdoctor stopped waiting for the test: {self.interrupted_by}"
            text = "\n".join([message, f"ran in: {self._where()}", *self._killed_lines()])
        elif not self.done and self.wait_status is not None and (signaled or not self.errors):
            text, message = self._crash_text(phase, captured, log, shown_log)
            self.runner.incidents.append(f"{nodeid} {message}")
        else:
            message = "the test's subprocess could not run it"
            text = "\n".join([f"numdoctor: {message}", f"ran in: {self._where()}", "",
                              *self.errors])
            if log:
                text += "\n\noutput of the subprocess:\n" + tail(log, 40)
        report = failed_report(self.item, phase, text, message, sections=sections,
                               start=self.t0, stop=time.time(),
                               user_properties=self._properties())
        self.reports.append(report)
        self.item.ihook.pytest_runtest_logreport(report=report)
        if phase != "teardown":
            self._log(passed_report(self.item, "teardown", start=time.time(),
                                    user_properties=[]))

    def _killed_lines(self) -> list[str]:
        killed = sorted({k.pid: k for k in [*self.killed, *self.leftovers]}.values(),
                        key=lambda k: k.pid)
        if not killed:
            return []
        return ["killed: " + ", ".join(
            f"{k.pid} (the test's process)" if k.pid == self.pid else k.describe()
            for k in killed)]

    def _hang_text(self, phase: str, captured: dict[str, str], log: str,
                   shown_log: str) -> tuple[str, str]:
        if self.started:
            message = (f"no result within {self.timeout:g} s ({self.timeout_source}); "
                       f"stopped during {phase}")
        else:
            message = (f"the subprocess did not start the test within "
                       f"{_STARTUP_LIMIT[self.method]:g} s")
        lines = [f"numdoctor: {message}", f"ran in: {self._where()}", *self._killed_lines()]
        stacks = self.stacks or Stacks()
        if stacks.python:
            lines += ["", "Python stacks of all threads (faulthandler):", stacks.python]
        if stacks.native:
            lines += ["", "Python and native stacks (py-spy dump --native):", stacks.native]
        if stacks.notes:
            lines += ["", *(f"note: {note}" for note in stacks.notes)]
        findings = sort_findings(message_findings("\n".join([*captured.values(), log])))
        if findings:
            lines += ["", *format_findings(findings)]
        if shown_log:
            lines += ["", "output of the subprocess:", tail(shown_log, 30)]
        return "\n".join(lines), message

    def _crash_text(self, phase: str, captured: dict[str, str], log: str,
                    shown_log: str) -> tuple[str, str]:
        assert self.wait_status is not None
        output = "\n".join([*captured.values(), log])
        command = ("forked pytest process" if self.method == "fork"
                   else "fresh pytest interpreter") + f" running {self.item.nodeid}"
        crash = explain_crash(self.runner.run_dir, self.pid, self.wait_status, command=command,
                              output=output, kernel_events=self.runner.kernel.for_pid(self.pid))
        if not self.killed:
            # The test's process is gone; what it started may not be.
            self.killed = kill_tree(self.pid, session=self.pid)
        message = f"crashed during {phase}: {crash.summary.removeprefix('was ')}"
        lines = [f"numdoctor: the test's process {crash.summary} during {phase}",
                 f"ran in: {self._where()}", *self._killed_lines()]
        if self.receiver.partial:
            lines.append("(it died while sending a report)")
        lines += self.errors
        if crash.findings:
            lines += ["", *format_findings(crash.findings)]
        if crash.traceback:
            lines += ["", "faulthandler traceback of the crash:", crash.traceback]
        if shown_log:
            lines += ["", "output of the subprocess:", tail(shown_log, 30)]
        return "\n".join(lines), message
