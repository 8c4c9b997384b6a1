"""The test worker's side: run the tests the pytest process sends, report each phase at once.

A worker is either a *fork* of the pytest process (milliseconds; it holds the collected items
already) or a *fresh interpreter* running pytest with the same arguments (when forking is
unsafe: a GNU OpenMP pool runs in the pytest process), which collects the session again and
finds the items by node id. Either way it:

- arms itself like every process numdoctor watches (faulthandler into the run directory,
  for crashes and for dumps on request; the record of the children it reaps), becomes a child
  subreaper (whatever a test starts stays in its tree) and dies with the pytest process;
- runs each test with pytest's own `runtestprotocol`, so fixtures, capture, logging, skips
  and xfails behave as in pytest; fixtures of wider scope live on from test to test, as in a
  plain session;
- sends every report the moment it is made (a later phase may hang or crash), and the
  warnings a test raised. After a failed phase it waits for the pytest process's answer: a
  failure may stop the session (`-x`, `--maxfail`), and pytest then tears down every fixture
  in the same test's teardown.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
import traceback
import warnings
from typing import Any, NoReturn

import pytest

from numdoctor.core import tree
from numdoctor.core.rundir import RunDir
from numdoctor.pytest_plugin._channel import Inbox, Sender

# Output files of the pytest run that spawned us; the worker must not overwrite them.
_OUTPUT_OPTIONS = ("xmlpath", "report_log", "htmlpath", "json_report_file")


def prepare_process(run_dir: RunDir) -> None:
    tree.die_with_parent()
    tree.become_subreaper()
    run_dir.arm_this_process()
    # Uncaptured output (pytest -s) into a pipe or file is block-buffered: what a test printed
    # just before a crash would be lost.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def capture_files(config: pytest.Config) -> dict[str, int]:
    """{"stdout": fd, "stderr": fd} of pytest's fd-level capture files, when it uses them.

    What a test writes before it crashes stays in these (unlinked) files; the pytest process
    reads them post mortem. pytest does not expose them, hence the careful attribute walk: with
    another pytest version this finds nothing and crash reports lack the captured output.
    """
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    found = {}
    for attribute, name in (("out", "stdout"), ("err", "stderr")):
        capture = getattr(multi, attribute, None)
        if getattr(capture, "targetfd", None) not in (1, 2):
            continue
        try:
            found[name] = capture.tmpfile.fileno()  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            continue
    return found


def _pickled(value: object) -> bytes | None:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


class ReportStream:
    """Sends each report as soon as it is made, and the warnings the test raised (pytest
    shows them in its warnings summary).

    The pytest process registers one, idle, before it forks: registering a plugin costs more
    than running a trivial test, so workers only point it at their channel.
    """

    NAME = "numdoctor-report-stream"

    def __init__(self) -> None:
        self.sender: Sender | None = None
        self.inbox: Inbox | None = None
        self.config: pytest.Config | None = None
        self.nodeid = ""
        # The worker's children once the test's setup was done: what the test itself starts
        # comes after (a fixture's server is not the test's leftover).
        self.children_after_setup: set[int] | None = None
        # What waits for the test's end, to go with its "done" in one write (each write wakes
        # the pytest process): the passed reports and the warnings. A report that did not pass
        # goes at once. Should the test hang or crash before its end, the pytest process reads
        # the phase it was in from its stack, and the passed phases before it need no more.
        self.held: list[dict[str, Any]] = []

    @classmethod
    def attach(cls, config: pytest.Config, sender: Sender, inbox: Inbox) -> ReportStream:
        manager = config.pluginmanager
        stream = manager.get_plugin(cls.NAME)
        if stream is None:
            stream = cls()
            manager.register(stream, cls.NAME)
        stream.sender, stream.inbox, stream.config = sender, inbox, config
        return stream

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Any:
        report = yield
        if self.sender is None or self.config is None:
            return report
        if report.when == "setup":
            self.children_after_setup = children()
        # Any failure may stop the session (-x, --maxfail, --sw): the next test, already
        # queued here, must not run before the pytest process has counted this one.
        wait = report.failed
        # Both ends run the same code: the report object itself travels, pickled, and comes
        # out identical; only one that does not pickle takes pytest's serialisation hooks.
        message = {"type": "report", "data": report, "ack": wait}
        if report.passed:
            self.held.append(message)
            return report
        held, self.held = self.held, []
        self.sender.send_many([*held, message], self._serialisable)
        if wait and self.inbox is not None:
            # The pytest process counts the failure: it may end the session, and pytest then
            # tears down every fixture in this test's teardown (nextitem=None).
            answer = self.inbox.get(kind="ack")
            if answer is not None:
                item.session.shouldfail = answer.get("shouldfail") or False
                item.session.shouldstop = answer.get("shouldstop") or False
        return report

    def _serialisable(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("type") != "report" or self.config is None:
            return message
        data = self.config.hook.pytest_report_to_serializable(config=self.config,
                                                              report=message["data"])
        return {**message, "data": data}

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str,
                                nodeid: str) -> None:
        # The hook is historic: registering replays earlier warnings, which are not ours.
        if self.sender is None or when != "runtest" or nodeid != self.nodeid:
            return
        self.held.append({"type": "warning", "nodeid": nodeid, "warning": {
            "message": _pickled(warning_message.message), "text": str(warning_message.message),
            "category": _pickled(warning_message.category), "filename": warning_message.filename,
            "lineno": warning_message.lineno, "line": warning_message.line}})


def forget_parent_finalizers(session: pytest.Session) -> None:
    """Fixtures the pytest process set up before the fork belong to it: tearing them down
    here too (twice, and in the wrong process) could stop a server the next test needs.
    What this process sets up itself, it tears down."""
    stack = getattr(getattr(session, "_setupstate", None), "stack", None)
    if not isinstance(stack, dict):
        return
    for entry in stack.values():
        finalizers = entry[0] if isinstance(entry, tuple) and entry else None
        if isinstance(finalizers, list):
            finalizers.clear()


class Server:
    """The command loop of a worker: {"type": "run", ...} runs one test, "stop" ends."""

    def __init__(self, config: pytest.Config, sender: Sender, inbox: Inbox,
                 find: Any) -> None:
        self.config = config
        self.sender = sender
        self.inbox = inbox
        self.find = find  # (index, nodeid) -> the item, or None
        self.stream = ReportStream.attach(config, sender, inbox)
        self.one_shot = False

    def serve(self) -> int:
        from _pytest.runner import runtestprotocol
        from _pytest.warnings import catch_warnings_for_item

        self.sender.send({"type": "ready", "pid": os.getpid(), "at": time.monotonic()})
        last: pytest.Item | None = None
        stopping = False
        while True:
            if not self.inbox.waiting():
                self.sender.ring()  # out of tests: the pytest process must hear the last ones
            command = self.inbox.get()
            if command is None or command["type"] == "stop":
                break
            if command["type"] != "run":
                continue
            if stopping or (last is not None and (last.session.shouldfail or
                                                  last.session.shouldstop)) or \
                    self.inbox.has("stop"):
                # The session ends: a test queued ahead is not run (a stop overtakes the
                # queue: the session did not get to these tests).
                self.sender.send({"type": "skipped", "nodeid": command["nodeid"]})
                continue
            item = self.find(command["index"], command["nodeid"])
            nextitem = None
            if command.get("next_nodeid"):
                nextitem = self.find(command["next_index"], command["next_nodeid"])
            if item is None:
                self.sender.send({"type": "not-run", "nodeid": command["nodeid"], "text": (
                    f"{command['nodeid']} was not found when the session was collected again "
                    "in a fresh interpreter (parametrize ids that change between runs cannot "
                    "run this way)")})
                continue
            self.stream.nodeid = item.nodeid
            if command.get("location") and "location" not in vars(item):
                # Computed once, in the pytest process, for its own log: not again here.
                with contextlib.suppress(AttributeError, TypeError):  # a read-only property
                    item.location = tuple(command["location"])
            if command.get("capture"):
                files = capture_files(self.config)
                self.sender.send({"type": "capture", "nodeid": item.nodeid, "capture": files})
                if files:
                    # Wait until the pytest process holds the capture files open: then
                    # nothing the test prints is lost, however early it crashes.
                    self.inbox.get(timeout=30.0, kind="capture-held")
            if command.get("forget_parent_fixtures"):
                forget_parent_finalizers(item.session)
            try:
                # What pytest's warnings plugin does around each test: -W and filterwarnings
                # apply, and what is raised is recorded for the summary.
                with catch_warnings_for_item(self.config, item.ihook, when="runtest",
                                             item=item):
                    runtestprotocol(item, log=False, nextitem=nextitem)
            except pytest.exit.Exception as exc:
                stopping = True
                self.sender.send({"type": "exit", "nodeid": item.nodeid, "reason": exc.msg,
                                  "returncode": exc.returncode})
            except KeyboardInterrupt:
                stopping = True
                self.sender.send({"type": "interrupted", "nodeid": item.nodeid})
            last = item
            leftovers = self._test_leftovers()
            held, self.stream.held = self.stream.held, []
            # When it ended by our clock (the same monotonic clock as the pytest process's):
            # the next test's deadline counts from there, however late this is read.
            done = {"type": "done", "nodeid": item.nodeid, "leftovers": leftovers,
                    "ended": time.monotonic()}
            self.sender.send_many([*held, done], self.stream._serialisable, ring=False)
        if last is not None:
            # The session ended early (-x, an exit): what is still set up goes now.
            with contextlib.suppress(Exception):
                last.session._setupstate.teardown_exact(None)
        leftovers = self._leftovers()
        self.sender.send({"type": "stopped", "leftovers": leftovers})
        return 0

    def _test_leftovers(self) -> list[tuple[int, str]]:
        """Kill what the test started and left running: the children that appeared after its
        setup and are still there after its teardown (orphans of the tree are our children
        too: we are its subreaper)."""
        before = self.stream.children_after_setup
        self.stream.children_after_setup = None
        if before is None:
            return []
        new = children() - before
        found: list[tuple[int, str]] = []
        for child in sorted(new):
            killed = tree.kill_tree(child, session=None, include_root=True, deadline=2.0)
            found += [(pid, killed.commands.get(pid, "?")) for pid in killed.killed]
        tree.reap()
        return found

    @staticmethod
    def _leftovers() -> list[tuple[int, str]]:
        """Kill and reap what the tests left running (every orphan of the tree is ours)."""
        me = os.getpid()
        if tree.has_children() is False:
            return []
        killed = tree.kill_tree(me, reap_all=True, deadline=2.0)
        return [(pid, killed.commands.get(pid, "?")) for pid in killed.killed]


def children() -> set[int]:
    """This process's children, from the main thread's list (cheap: one small file). A test
    runs in the main thread, and orphans are adopted by the thread group leader."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return {int(word) for word in fh.read().split()}
    except OSError:
        return set()


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def forked_worker(session: pytest.Session, commands_fd: int, messages_fd: int,
                  doorbell_fd: int, run_dir: RunDir) -> NoReturn:
    """Body of a forked worker; never returns into the pytest loop."""
    code = 0
    sender = Sender(messages_fd, doorbell_fd)
    items = session.items

    def find(index: int, nodeid: str) -> pytest.Item | None:
        if 0 <= index < len(items) and items[index].nodeid == nodeid:
            return items[index]
        return next((i for i in items if i.nodeid == nodeid), None)

    try:
        os.setsid()
        prepare_process(run_dir)
        code = Server(session.config, sender, Inbox(commands_fd), find).serve()
    except BaseException:
        code = 70
        with contextlib.suppress(Exception):
            sender.send({"type": "internal-error", "text": traceback.format_exc()})
    finally:
        _flush_stdio()
        os._exit(code)


class SpawnedWorker:
    """Plugin of a fresh interpreter that runs tests for the pytest process that started it."""

    def __init__(self, config: pytest.Config, spec: dict[str, Any]) -> None:
        self.config = config
        self.run_dir = RunDir(spec["run_dir"], dump_signal=spec["dump_signal"])
        self.sender = Sender(spec["messages"], spec["doorbell"])
        self.inbox = Inbox(spec["commands"])
        for fd in (spec["messages"], spec["doorbell"], spec["commands"]):
            os.set_inheritable(fd, False)  # not for the tests' own subprocesses
        for name in _OUTPUT_OPTIONS:
            if getattr(config.option, name, None):
                setattr(config.option, name, None)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.sender.send({"type": "collect-error", "nodeid": report.nodeid,
                              "text": report.longreprtext})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        by_id = {item.nodeid: item for item in session.items}
        try:
            prepare_process(self.run_dir)
            Server(self.config, self.sender, self.inbox,
                   lambda index, nodeid: by_id.get(nodeid)).serve()
        except Exception:
            self.sender.send({"type": "internal-error", "text": traceback.format_exc()})
        return True

    def pytest_sessionfinish(self) -> None:
        _flush_stdio()
