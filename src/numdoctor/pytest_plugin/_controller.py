"""The pytest process's side: which tests run in a worker, and what their reports say.

With `--numdoctor-hang-timeout`, every test runs in a long-lived worker process, many tests to
one worker, at pytest's own speed; the pytest process waits for each with a deadline. A test
that hangs (GIL held or not) or crashes fails alone, with the diagnosis `numdoctor run` gives;
its worker is killed with everything it started and a new one takes the next test (fixtures of
session and module scope are set up again there, and the report says so).

A test marked `@pytest.mark.numdoctor_isolate`, or every test with `--numdoctor-isolate`, gets
a worker of its own that ends with it: nothing it does in memory reaches the next test.

A worker is a fork of this process unless a GNU OpenMP pool runs here: a forked child would
deadlock in it (FORK001), so a fresh interpreter is spawned instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from numdoctor.core.rundir import RunDir
from numdoctor.core.status import Status
from numdoctor.pytest_plugin import MARKER
from numdoctor.pytest_plugin._reports import (
    crash_text,
    failed_report,
    hang_text,
    passed_report,
    tail,
)
from numdoctor.pytest_plugin._workers import TestRun, Worker, unpickled_warning

# How many tests a shared worker may run ahead of this process's reading of their reports.
AHEAD = 64

if TYPE_CHECKING:
    from numdoctor.core.kmsg import KernelLog
    from numdoctor.findings import Finding


class Controller:
    """Registered when a numdoctor option or marker asks for workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hang_timeout: float | None = config.getoption("numdoctor_hang_timeout")
        self.isolate_all: bool = config.getoption("numdoctor_isolate")
        self.start_method: str = config.getoption("numdoctor_start_method")
        self.run_dir = _run_dir()
        self.session: pytest.Session | None = None
        self.fork_hazard: Finding | None = None  # a FORK001 finding
        self._threads_without_hazard: frozenset[str] | None = None
        self._kernel: KernelLog | None = None
        self.shared: Worker | None = None  # the worker that runs test after test
        self.workers = 0
        self.replaced: list[str] = []  # why each shared worker was replaced
        self.methods: Counter[str] = Counter()
        self.incidents: list[str] = []
        self._loop_is_default: bool | None = None
        self.worker_errors: list[str] = []
        from numdoctor.pytest_plugin._serve import ReportStream

        config.pluginmanager.register(ReportStream(), ReportStream.NAME)
        from numdoctor.core import tree

        tree.preload()

    def kernel(self) -> KernelLog:
        if self._kernel is None:
            from numdoctor.core.kmsg import KernelLog

            self._kernel = KernelLog()
        return self._kernel

    # -- which tests, where ------------------------------------------------------------------
    def settings(self, item: pytest.Item) -> tuple[str, float | None, str]:
        """("own" | "shared" | "", timeout, where the timeout comes from)."""
        marker = item.get_closest_marker(MARKER)
        if marker is not None and marker.kwargs.get("hang_timeout") is not None:
            return "own", float(marker.kwargs["hang_timeout"]), \
                f"hang_timeout of @pytest.mark.{MARKER}"
        if marker is not None or self.isolate_all:
            return "own", self.hang_timeout, "--numdoctor-hang-timeout"
        if self.hang_timeout:
            return "shared", self.hang_timeout, "--numdoctor-hang-timeout"
        return "", None, ""

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

    def _new_worker(self) -> Worker:
        method, why = self.choose_method()
        self.workers += 1
        worker = Worker(self, method, why, self.workers)
        worker.start()
        return worker

    # -- hooks -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None
                                ) -> bool | None:
        where, timeout, source = self.settings(item)
        if not where:
            if self.shared is not None:
                # The next test runs here, in-process: what the worker holds is its own.
                self._stop_shared()
            return None
        self.session = item.session
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        run = TestRun(item, timeout, source)
        index = self._index(item)
        if where == "own":
            worker = self._new_worker()
            self._run(worker, run, index, nextitem, one_shot=True)
            worker.stop()
            self._teardown_parent_fixtures(item, nextitem)
        else:
            if self.shared is None or not self.shared.alive:
                self.shared = self._new_worker()
            worker = self.shared
            ahead = self._ahead(worker, index, nextitem)
            self._run(worker, run, index, nextitem, one_shot=False, ahead=ahead)
            if not worker.alive:
                self.shared = None
                if run.verdict is not None:
                    self.replaced.append(f"{item.nodeid} {run.verdict.value}")
        self.methods[worker.method] += 1
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        if run.exit_request is not None:
            reason, returncode = run.exit_request
            self._stop_shared()
            pytest.exit(reason, returncode)
        return True

    def _ahead(self, worker: Worker, index: int, nextitem: pytest.Item | None
               ) -> list[tuple[int, pytest.Item, pytest.Item | None]]:
        """The tests after this one that the worker may run before this process has read its
        reports: up to AHEAD of them, as long as they run in the shared worker and in the
        session's order. Topped up once half are done, so that it never runs dry."""
        items = self.session.items if self.session is not None else []
        if nextitem is None or self.settings(nextitem)[0] != "shared":
            return []
        in_order = 0 <= index < len(items) - 1 and items[index + 1] is nextitem
        if not (in_order and self._default_loop()):
            # Another loop (pytest-xdist's...) picks the tests: only the next one is known.
            following = items[index + 2] if in_order and index + 2 < len(items) else None
            return [(index + 1 if in_order else -1, nextitem, following)]
        if worker.queued_until - index > AHEAD // 2:
            return []
        ahead = []
        for position in range(max(index, worker.queued_until) + 1,
                              min(index + 1 + AHEAD, len(items))):
            candidate = items[position]
            if self.settings(candidate)[0] != "shared":
                break  # it runs elsewhere: what comes after waits for it
            following = items[position + 1] if position + 1 < len(items) else None
            ahead.append((position, candidate, following))
        return ahead

    def _default_loop(self) -> bool:
        """pytest's own loop runs the session: every test, in the order of its items."""
        if self._loop_is_default is None:
            loops = self.config.hook.pytest_runtestloop.get_hookimpls()
            self._loop_is_default = all(
                loop.hookwrapper or loop.wrapper
                or getattr(loop.plugin, "__name__", "") == "_pytest.main" for loop in loops)
        return self._loop_is_default

    def _index(self, item: pytest.Item) -> int:
        items = item.session.items
        # The default loop runs items in order: the next index is almost always the answer.
        guess = getattr(self, "_last_index", -1) + 1
        if 0 <= guess < len(items) and items[guess] is item:
            self._last_index = guess
            return guess
        for index, candidate in enumerate(items):
            if candidate is item:
                self._last_index = index
                return index
        return -1

    def _run(self, worker: Worker, run: TestRun, index: int, nextitem: pytest.Item | None,
             *, one_shot: bool,
             ahead: Sequence[tuple[int, pytest.Item, pytest.Item | None]] = ()) -> None:
        worker.run(run, index, nextitem, one_shot=one_shot, ahead=ahead)
        self._conclude(worker, run)

    def log_report(self, run: TestRun, worker: Worker, report: pytest.TestReport) -> None:
        report.user_properties = [*report.user_properties,
                                  ("numdoctor_worker", worker.method)]
        if report.failed:
            report.sections.append(("numdoctor", f"ran in {worker.where()}"))
        run.reports.append(report)
        run.item.ihook.pytest_runtest_logreport(report=report)

    def record_warning(self, item: pytest.Item, data: dict[str, Any]) -> None:
        record = unpickled_warning(data)
        self.config.hook.pytest_warning_recorded.call_historic(kwargs=dict(
            warning_message=record, nodeid=item.nodeid, when="runtest", location=None))

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

    def _stop_shared(self) -> None:
        if self.shared is not None:
            worker, self.shared = self.shared, None
            worker.stop()
            self._note_leftovers(worker)

    def _note_leftovers(self, worker: Worker) -> None:
        if worker.stopped_leftovers:
            self.incidents.append(
                f"killed {len(worker.stopped_leftovers)} process(es) the tests left running "
                f"in worker {worker.pid}: "
                + ", ".join(f"{pid} ({command})" for pid, command in worker.stopped_leftovers))

    def pytest_sessionfinish(self) -> None:
        self._stop_shared()

    def pytest_keyboard_interrupt(self) -> None:
        if self.shared is not None:
            self.shared.kill()
            self.shared = None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.methods:
            return
        terminalreporter.write_sep("-", "numdoctor")
        forked, spawned = self.methods.get("fork", 0), self.methods.get("spawn", 0)
        parts = []
        if forked:
            parts.append(f"{forked} in forked workers")
        if spawned:
            parts.append(f"{spawned} in fresh interpreters")
        terminalreporter.write_line(f"tests run in {self.workers} worker process(es): "
                                    f"{', '.join(parts)}")
        if spawned and self.fork_hazard is not None and self.start_method == "auto":
            terminalreporter.write_line(f"  fresh interpreters because {self._hazard_text()}")
        if self.replaced:
            terminalreporter.write_line(
                f"the worker was replaced {len(self.replaced)} time(s), after: "
                + "; ".join(self.replaced)
                + ". Fixtures of session and module scope were set up again in each new "
                  "worker.")
        if not (self.incidents or self.worker_errors):
            return
        from numdoctor.redact import redact_text

        for line in self.incidents:
            terminalreporter.write_line(redact_text(line))
        for text in self.worker_errors:
            terminalreporter.write_line(redact_text(f"worker error: {tail(text, 20)}"))

    def pytest_unconfigure(self) -> None:
        if self.shared is not None:
            self.shared.kill()
        if self._kernel is not None:
            self._kernel.close()
        self.run_dir.remove()

    # -- spawned interpreters ----------------------------------------------------------------
    def spawn_command(self, spec: str, serial: int) -> list[str]:
        command = [sys.executable, *subprocess._args_from_interpreter_flags()]  # type: ignore
        script = sys.argv[0] if sys.argv else ""
        if os.path.basename(script) in ("pytest", "py.test") and os.path.isfile(script):
            command.append(script)  # keeps sys.path[0] what the `pytest` script gives
        else:
            command += ["-m", "pytest"]
        command += list(self.config.invocation_params.args)
        command += ["--numdoctor-worker", spec,
                    "-o", f"cache_dir={os.path.join(self.run_dir.path, 'cache')}"]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            with contextlib.suppress(Exception):
                command += ["--basetemp",
                            str(factory.getbasetemp() / f"numdoctor-worker-{serial}")]
        if self.config.pluginmanager.hasplugin("xdist"):
            command += ["-n", "0"]  # no workers of its own
        return command

    # -- reports of tests that did not finish ------------------------------------------------
    def _conclude(self, worker: Worker, run: TestRun) -> None:
        nodeid = run.item.nodeid
        if run.leftovers and run.verdict is None:
            self.incidents.append(
                f"killed {len(run.leftovers)} process(es) {nodeid} left running: "
                + ", ".join(f"{pid} ({command})" for pid, command in run.leftovers))
        if run.verdict is None and not (run.errors and not run.reports):
            return
        phase = run.phase or worker.phase(run)
        captured = run.captured or worker.captured()
        sections = [(f"Captured {name} {phase}", text) for name, text in captured.items()]
        log = worker.log_text()
        # A spawned pytest's own output (its header...) says nothing once tests run with
        # their output captured; before that, or without capture, it may say everything.
        shown_log = "" if worker.ready and self.config.getoption("capture") != "no" else log
        if run.verdict is Status.DEADLOCK and run.incident is not None and \
                run.incident.diagnosis is not None:
            seconds = time.monotonic() - run.started
            message = (f"deadlocked during {phase}: {run.incident.diagnosis.summary} (proven "
                       f"after {seconds:.1f} s"
                       + (f", before the {run.timeout:g} s timeout)" if run.timeout else ")"))
            text = hang_text(run, worker, message, shown_log)
            self.incidents.append(f"{nodeid} {message}")
        elif run.verdict in (Status.HANG, Status.SPINNING, Status.DEADLOCK):
            if run.started:
                message = (f"no result within {run.timeout:g} s ({run.timeout_source}); "
                           f"stopped during {phase}")
            else:
                message = (f"the worker did not start the test within the start-up limit "
                           f"({'fork' if worker.method == 'fork' else 'fresh interpreter'})")
            text = hang_text(run, worker, message, shown_log)
            self.incidents.append(f"{nodeid} hung: {message}")
        elif run.verdict is not None and run.ending is not None:
            text, message = crash_text(run, worker, phase, shown_log)
            self.incidents.append(f"{nodeid} {message}")
        else:
            message = "the test's worker could not run it"
            text = "\n".join([f"numdoctor: {message}", f"ran in: {worker.where()}", "",
                              *run.errors])
            if log:
                text += "\n\noutput of the worker:\n" + tail(log, 40)
        if not worker.alive and self.settings(run.item)[0] == "shared":
            text += ("\n\nThe worker was replaced: the next tests run in a new worker, where "
                     "fixtures of session and module scope are set up again.")
        # The passed reports of the phases before waited in the worker for the test's end,
        # which never came: pytest (junitxml, -rA, the terminal) expects one per phase.
        done = {report.when for report in run.reports}
        for before in ("setup", "call")[:("setup", "call", "teardown").index(phase)]:
            if before not in done:
                report = passed_report(run.item, before,  # type: ignore[arg-type]
                                       start=time.time(),
                                       user_properties=[("numdoctor_worker", worker.method)])
                run.reports.append(report)
                run.item.ihook.pytest_runtest_logreport(report=report)
        report = failed_report(run.item, phase, text, message, sections=sections,  # type: ignore[arg-type]
                               start=time.time(), stop=time.time(),
                               user_properties=[("numdoctor_worker", worker.method)])
        run.reports.append(report)
        run.item.ihook.pytest_runtest_logreport(report=report)
        if phase != "teardown":
            report = passed_report(run.item, "teardown", start=time.time(), user_properties=[])
            run.reports.append(report)
            run.item.ihook.pytest_runtest_logreport(report=report)


def _run_dir() -> RunDir:
    from numdoctor.core.rundir import private_directory

    return RunDir(private_directory("numdoctor-pytest-"))
