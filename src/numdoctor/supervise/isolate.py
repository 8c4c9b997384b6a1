"""`numdoctor.isolate(fn, *args, ...)`: run one call in a fresh process, under supervision.

The call runs in a new interpreter (multiprocessing's "spawn" semantics: nothing is
inherited through fork, so no OpenMP or CUDA state can deadlock it), watched by the same
supervisor as `numdoctor run`. It returns what `fn` returned or re-raises what `fn` raised.
When the process hangs, spins, runs past `timeout` or dies, the caller gets a `HangError` or
`CrashError` carrying the stacks of every thread, the signal, the findings and the full
report, instead of a hung or dead session.

Arguments and the result travel by pickle. A function that cannot be pickled (a lambda, a
function defined inside another) or unpicklable arguments fail before anything is started,
with a `TypeError` that says which; an unpicklable result gives a `TypeError` too.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from numdoctor.core.status import Status
from numdoctor.findings import Finding, Report

# The run statuses at which the call's process was stopped rather than ended on its own.
_INCIDENTS = {status.value for status in Status if status.incident}

T = TypeVar("T")


class IsolateError(RuntimeError):
    """The isolated call did not return: base class of HangError and CrashError."""

    def __init__(self, summary: str, report: Report) -> None:
        super().__init__(summary)
        self.summary = summary
        self.report = report
        outcome = report.outcome or {}
        self.status: str = outcome.get("status", "")
        self.findings: list[Finding] = list(report.findings)
        self.stacks: list[dict[str, Any]] = list(outcome.get("stacks", []))
        self.crash_dumps: dict[str, str] = dict(outcome.get("crash_dumps", {}))
        self.stderr_tail: str = outcome.get("stderr_tail", "")
        self.pid: int | None = next((p["pid"] for p in outcome.get("processes", [])
                                     if p.get("role") == "main"), None)

    def __str__(self) -> str:
        from numdoctor.redact import redact_text

        lines = [self.summary]
        for finding in self.findings[:3]:
            where = f" [{finding.where}]" if finding.where else ""
            lines.append(f"  {finding.severity.value.upper()} {finding.code}{where}: "
                         f"{finding.title}")
            lines.extend(f"      {e}" for e in finding.evidence[:3])
        return redact_text("\n".join(lines))


class HangError(IsolateError):
    """The isolated call hung, spun without progress, or ran past its timeout.

    `kind` is "hang", "spinning", "timeout", "deadlock" (proven: it could never return, found
    without waiting for a timeout) or "interrupted"; `stacks` holds every thread of
    every process as dumped before the kill.
    """

    @property
    def kind(self) -> str:
        return self.status


class CrashError(IsolateError):
    """The isolated call's process died (a signal, the OOM killer, or an exit without a
    result). `signal` is the signal number or None; `exit_code` is 128+N or the exit status."""

    def __init__(self, summary: str, report: Report) -> None:
        super().__init__(summary, report)
        outcome = report.outcome or {}
        self.exit_code: int | None = outcome.get("exit_code")
        code = self.exit_code or 0
        self.signal: int | None = code - 128 if code > 128 and self.status in (
            Status.CRASH, Status.OOM, Status.SIGNAL) else None
        self.signal_name = signal.Signals(self.signal).name if self.signal and \
            self.signal in signal.Signals._value2member_map_ else ""
        self.culprit = next((e.split(": ", 1)[1] for f in self.findings for e in f.evidence
                             if e.startswith("culprit: ")), "")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the isolated process (its `__cause__`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _pickle_check(fn: Callable, args: tuple, kwargs: dict) -> bytes:
    try:
        return pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        culprit = "the call"
        try:
            pickle.dumps(fn)
        except Exception:
            culprit = (f"the function {getattr(fn, '__qualname__', fn)!r} (it must be "
                       "importable: defined at the top level of a module, not a lambda or "
                       "a nested function)")
        else:
            for index, arg in enumerate(args):
                try:
                    pickle.dumps(arg)
                except Exception:
                    culprit = f"positional argument {index} ({type(arg).__name__})"
                    break
            else:
                for name, value in kwargs.items():
                    try:
                        pickle.dumps(value)
                    except Exception:
                        culprit = f"keyword argument {name!r} ({type(value).__name__})"
                        break
        raise TypeError(f"numdoctor.isolate: {culprit} cannot be pickled, so it cannot be "
                        f"sent to the isolated process: {type(exc).__name__}: {exc}") from exc


def isolate(fn: Callable[..., T], /, *args: Any, timeout: float | None = None,
            hang_timeout: float | None = None, spin_timeout: float | None = None,
            **kwargs: Any) -> T:
    """Call `fn(*args, **kwargs)` in a supervised subprocess and return its result.

    timeout: wall-clock seconds before the call is stopped (HangError, kind "timeout").
    hang_timeout: seconds without output, heartbeat (`numdoctor.heartbeat()`) and CPU use
        before the call counts as hung (HangError, kind "hang").
    spin_timeout: the same while a CPU stays busy (kind "spinning"); default hang_timeout.

    Raises HangError or CrashError (with stacks, signal and findings) when the call does not
    return; re-raises fn's own exception (its remote traceback as `__cause__`); TypeError when
    fn, its arguments or its result cannot be pickled.
    """
    if not sys.platform.startswith("linux"):
        raise RuntimeError("numdoctor.isolate: supported on Linux only")
    if not callable(fn):
        raise TypeError(f"numdoctor.isolate: {fn!r} is not callable")
    for name, value in (("timeout", timeout), ("hang_timeout", hang_timeout),
                        ("spin_timeout", spin_timeout)):
        if value is not None and not value >= 0:
            raise ValueError(f"numdoctor.isolate: {name} must be a number of seconds >= 0")
    import multiprocessing.spawn

    call = _pickle_check(fn, args, kwargs)
    preparation = multiprocessing.spawn.get_preparation_data("numdoctor-isolate")
    if "authkey" in preparation:  # multiprocessing refuses to pickle its own wrapper type
        preparation["authkey"] = bytes(preparation["authkey"])
    workdir = tempfile.mkdtemp(prefix="numdoctor-isolate-")
    try:
        return _run(workdir, preparation, call, timeout, hang_timeout, spin_timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: str, preparation: dict, call: bytes, timeout: float | None,
         hang_timeout: float | None, spin_timeout: float | None) -> Any:
    payload = os.path.join(workdir, "payload.pickle")
    result = os.path.join(workdir, "result.pickle")
    report_path = os.path.join(workdir, "report.json")
    with open(payload, "wb") as fh:
        pickle.dump((preparation, call), fh, protocol=pickle.HIGHEST_PROTOCOL)
    config = os.path.join(workdir, "config.json")
    with open(config, "w", encoding="utf-8") as fh:
        json.dump({
            "command": [sys.executable, "-m", "numdoctor.supervise._worker", payload, result],
            "timeout": timeout, "hang_timeout": hang_timeout, "spin_timeout": spin_timeout,
            "report": report_path, "parent": os.getpid(),
        }, fh)
    supervisor = subprocess.Popen([sys.executable, "-m", "numdoctor.supervise", config],
                                  start_new_session=True)
    try:
        supervisor.wait()
    except BaseException:
        # Interrupted (Ctrl-C) or failing here: stop the call and its whole tree.
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=10)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
        raise
    report = _load_report(report_path, supervisor.returncode)
    status = (report.outcome or {}).get("status", "")
    summary = (report.outcome or {}).get("summary", "")
    if status in _INCIDENTS:
        raise HangError(f"numdoctor.isolate: {summary}", report)
    if os.path.exists(result):
        with open(result, "rb") as fh:
            record = pickle.load(fh)
        return _unpack(record)
    raise CrashError(f"numdoctor.isolate: {summary or 'the isolated process died'}", report)


def _load_report(path: str, code: int | None) -> Report:
    try:
        with open(path, encoding="utf-8") as fh:
            return Report.from_dict(json.load(fh))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"numdoctor.isolate: the supervisor process failed (exit status "
                           f"{code}) and left no report: {exc}") from None


def _unpack(record: tuple) -> Any:
    kind = record[0]
    if kind == "returned":
        return record[1]
    if kind == "raised":
        _, exc, text = record
        raise exc from RemoteTraceback(text)
    if kind == "raised-unpicklable":
        _, description, text = record
        raise RuntimeError(f"numdoctor.isolate: the function raised {description}, which "
                           "cannot be pickled back") from RemoteTraceback(text)
    if kind == "result-unpicklable":
        _, description, type_name = record
        raise TypeError(f"numdoctor.isolate: the function returned a {type_name}, which cannot "
                        f"be pickled back to the caller: {description}")
    if kind == "unpickle-failed":
        _, description, text = record
        raise TypeError(f"numdoctor.isolate: the isolated process could not unpickle the "
                        f"function or its arguments: {description}") from RemoteTraceback(text)
    raise RuntimeError(f"numdoctor.isolate: unexpected result record {kind!r}")
