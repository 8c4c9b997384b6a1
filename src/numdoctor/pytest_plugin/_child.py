"""The test's side of isolation: run one test's protocol, report each phase as it ends.

The same code runs in both kinds of subprocess:

- a *forked* copy of the pytest process (`forked_child`), which already holds the collected
  test item and every fixture the pytest process had set up;
- a *spawned* fresh interpreter (`SpawnedChild`, a plugin activated by a hidden option), which
  collects the test's file again and runs only that test.

Either way the process arms faulthandler (crashes, and dumps on request), becomes a child
subreaper (so whatever the test starts stays in its tree), sends every report the moment it
is made, and kills what the test left running before it says it is done.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import select
import sys
import traceback
import warnings
from typing import Any, NoReturn

import pytest

from numdoctor.pytest_plugin._channel import Sender
from numdoctor.pytest_plugin._diagnosis import DUMP_SIGNAL, faulthandler_path
from numdoctor.pytest_plugin._processes import (
    become_subreaper,
    die_with_parent,
    kill_own_descendants,
)

# Output files of the pytest run that spawned us; a one-test run must not overwrite them.
_OUTPUT_OPTIONS = ("xmlpath", "report_log", "htmlpath", "json_report_file")


def prepare_process(run_dir: str) -> None:
    die_with_parent()
    become_subreaper()
    fd = os.open(faulthandler_path(run_dir, os.getpid()),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    faulthandler.enable(file=fd, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True, chain=False)
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
    """Sends each report as soon as it is made (a later phase may crash or hang), and the
    warnings the test raised (pytest shows them in its warnings summary).

    The pytest process registers one, idle, before it forks: registering a plugin costs more
    than running a trivial test, so forked children only point it at their pipe.
    """

    NAME = "numdoctor-report-stream"

    def __init__(self) -> None:
        self.sender: Sender | None = None
        self.config: pytest.Config | None = None
        self.nodeid = ""

    @classmethod
    def attach(cls, item: pytest.Item, sender: Sender) -> ReportStream:
        manager = item.config.pluginmanager
        stream = manager.get_plugin(cls.NAME)
        if stream is None:
            stream = cls()
            manager.register(stream, cls.NAME)
        stream.sender, stream.config, stream.nodeid = sender, item.config, item.nodeid
        return stream

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if self.sender is not None and self.config is not None:
            data = self.config.hook.pytest_report_to_serializable(config=self.config,
                                                                  report=report)
            self.sender.send({"type": "report", "data": data})
        return report

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str,
                                nodeid: str) -> None:
        # The hook is historic: registering replays earlier warnings, which are not ours.
        if self.sender is None or when != "runtest" or nodeid != self.nodeid:
            return
        self.sender.send({"type": "warning", "warning": {
            "message": _pickled(warning_message.message), "text": str(warning_message.message),
            "category": _pickled(warning_message.category), "filename": warning_message.filename,
            "lineno": warning_message.lineno, "line": warning_message.line}})


def _forget_parent_finalizers(session: pytest.Session) -> None:
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


def run_item(item: pytest.Item, sender: Sender, *, ack_fd: int | None = None) -> None:
    from _pytest.runner import runtestprotocol
    from _pytest.warnings import catch_warnings_for_item

    start: dict[str, Any] = {"type": "start", "pid": os.getpid()}
    if ack_fd is not None:
        start["capture"] = capture_files(item.config)
    sender.send(start)
    if ack_fd is not None and start["capture"]:
        # Wait until the pytest process holds the capture files open: then nothing the test
        # prints is lost, however early it crashes.
        if select.select([ack_fd], [], [], 30.0)[0]:
            os.read(ack_fd, 1)
    _forget_parent_finalizers(item.session)
    stream = ReportStream.attach(item, sender)
    try:
        # What pytest's warnings plugin does around each test: -W and filterwarnings apply,
        # and what is raised is recorded for the summary.
        with catch_warnings_for_item(item.config, item.ihook, when="runtest", item=item):
            runtestprotocol(item, log=False, nextitem=None)
    except pytest.exit.Exception as exc:
        sender.send({"type": "exit", "reason": exc.msg, "returncode": exc.returncode})
    except KeyboardInterrupt:
        sender.send({"type": "interrupted"})
    finally:
        stream.sender = None
    leftovers = kill_own_descendants()
    sender.send({"type": "done", "leftovers": [(k.pid, k.command) for k in leftovers]})


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def forked_child(item: pytest.Item, write_fd: int, run_dir: str) -> NoReturn:
    """Body of the forked subprocess; never returns into the pytest loop."""
    code = 0
    sender = Sender(write_fd)
    try:
        os.setsid()
        prepare_process(run_dir)
        run_item(item, sender)
    except BaseException:
        code = 70
        with contextlib.suppress(Exception):
            sender.send({"type": "internal-error", "text": traceback.format_exc()})
    finally:
        _flush_stdio()
        os._exit(code)


class SpawnedChild:
    """Plugin of a fresh interpreter that runs one test for the pytest process."""

    def __init__(self, config: pytest.Config, spec: dict[str, Any]) -> None:
        self.config = config
        self.nodeid: str = spec["nodeid"]
        self.run_dir: str = spec["run_dir"]
        self.ack_fd: int = spec["ack"]
        self.sender = Sender(spec["write"])
        for fd in (spec["write"], spec["ack"]):
            os.set_inheritable(fd, False)  # not for the test's own subprocesses
        self.ran = False
        # Collect only the test's file (config.args is what the session collects).
        config.args = [spec["path"]]
        for name in _OUTPUT_OPTIONS:
            if getattr(config.option, name, None):
                setattr(config.option, name, None)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.sender.send({"type": "collect-error", "nodeid": report.nodeid,
                              "text": report.longreprtext})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        keep = [item for item in items if item.nodeid == self.nodeid]
        dropped = [item for item in items if item.nodeid != self.nodeid]
        items[:] = keep
        if dropped:
            config.hook.pytest_deselected(items=dropped)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        self.ran = True
        try:
            prepare_process(self.run_dir)
            run_item(item, self.sender, ack_fd=self.ack_fd)
        except Exception:
            self.sender.send({"type": "internal-error", "text": traceback.format_exc()})
        return True

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.ran:
            self.sender.send({"type": "not-run", "text": (
                f"{self.nodeid} was not found when its file was collected again in a fresh "
                "interpreter (parametrize ids that change between runs cannot be isolated "
                "this way)")})
