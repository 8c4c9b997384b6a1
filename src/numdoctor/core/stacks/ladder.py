"""The dump ladder: where is every thread of every process, Python and native?

For a Python process, from richest to most robust:

1. py-spy `dump --native --json` or pystack: Python and native frames interleaved, the
   library of each native frame, which thread runs and which holds the GIL. Needs ptrace.
   Attaching is transparent to the process: a `sleep()` or a blocking read resumes as if
   nothing happened. pystack goes first on processes that map very large libraries
   (PyTorch), py-spy elsewhere; each is the other's fallback.
2. faulthandler, armed in every Python process of the tree (the injected sitecustomize): the
   process writes all its threads' Python stacks into its file in the run directory when it
   gets the dump signal. No privileges; written by C code, so it answers while C code holds
   the GIL. Used only where the tools could not attach: the signal interrupts a blocking call
   (`sleep()` returns early), which changes what the program does next. Only processes that
   announced their handler (`py-<pid>.info`) and still catch the signal are signalled: for any
   other process a real-time signal would be fatal.

For a native process: gdb `thread apply all bt`, then the /proc stack scan (the libraries
found on each thread's stack, without function names).

Each tool runs under its own timeout and is followed by SIGCONT, in case a tool that timed out
left the process stopped. Each thread appears once; why a rung was not available is recorded,
and a refused ptrace is explained once per report with its fix.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from numdoctor.core.procfs import catches_signal, read_maps
from numdoctor.core.stacks.faulthandler import parse_faulthandler
from numdoctor.core.stacks.gdb import find_gdb, parse_gdb
from numdoctor.core.stacks.model import ProcessStacks, ThreadStack
from numdoctor.core.stacks.pyspy import (
    PYSTACK_ABOVE,
    code_size,
    find_py_spy,
    find_pystack,
    parse_py_spy,
    ptrace_denied,
    why_tool_failed,
)
from numdoctor.core.stacks.scan import scan_native

NATIVE_SOURCES = ("py-spy", "pystack", "gdb")


@dataclass
class Target:
    """A process to dump, and what we know about it beforehand."""

    pid: int
    python: bool  # a Python interpreter (py-spy can read it)
    dumpable: bool  # announced a faulthandler dump handler (py-<pid>.info)


class Dumper:
    def __init__(self, run_dir: str, dump_signal: int, helpers: set[int] | None = None) -> None:
        self.run_dir = run_dir
        self.dump_signal = dump_signal
        self.py_spy = find_py_spy()
        self.pystack = find_pystack()
        self.gdb = find_gdb()
        # pids of running tool processes (not part of the tree); shared with the supervisor
        self.helpers: set[int] = helpers if helpers is not None else set()
        self.seconds: dict[str, float] = {}  # time spent per rung, for the report

    def fh_path(self, pid: int) -> Path:
        return Path(self.run_dir, f"fh-{pid}.txt")

    def dump(self, targets: list[Target], *, tool_timeout: float = 5.0,
             faulthandler_wait: float = 1.0, gdb: bool = True) -> dict[int, ProcessStacks]:
        """`gdb=False`: native (non-Python) processes get the stack scan, not gdb (a tenth of
        a second of CPU per process: too much for a look at a tree that may be healthy)."""
        results = {t.pid: ProcessStacks(t.pid, python=t.python) for t in targets}
        started = time.monotonic()
        self._tools(targets, results, tool_timeout, gdb)
        self.seconds["native"] = time.monotonic() - started
        # faulthandler for the Python processes the tools could not read.
        unread = [t for t in targets if t.python and not _has_python_frames(results[t.pid])]
        if unread:
            started = time.monotonic()
            self._faulthandler(unread, results, faulthandler_wait)
            self.seconds["faulthandler"] = time.monotonic() - started
        for target in unread:  # neither a tool nor faulthandler: the libraries, at least
            if not results[target.pid].threads:
                threads = scan_native(target.pid)
                if threads:
                    results[target.pid].threads = threads
                    results[target.pid].sources.append("stack scan")
        return results

    # -- the tools ---------------------------------------------------------------------------
    def _tools(self, targets: list[Target], results: dict[int, ProcessStacks],
               timeout: float, gdb: bool) -> None:
        workers = max(2, min(8, os.cpu_count() or 2))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(self._native, target, timeout, gdb): target
                       for target in targets}
            for future in concurrent.futures.as_completed(futures):
                target = futures[future]
                try:
                    threads, source, note = future.result()
                except Exception as exc:  # a parsing bug must not lose the other dumps
                    threads, source, note = [], "", f"native stack failed: {exc!r}"
                stacks = results[target.pid]
                if note:
                    stacks.notes.append(note)
                if threads:
                    stacks.sources.append(source)
                    stacks.native = source in NATIVE_SOURCES
                    stacks.threads = threads

    def _native(self, target: Target, timeout: float, gdb: bool
                ) -> tuple[list[ThreadStack], str, str]:
        if target.python:
            return self._python_native(target.pid, timeout)
        if not gdb:  # a look at a tree that may be healthy: the libraries on each stack
            return scan_native(target.pid), "stack scan", ""
        if self.gdb is not None:
            try:
                maps = read_maps(target.pid)
            except OSError:
                maps = []
            out, err, _code = self._run(
                [self.gdb, "-p", str(target.pid), "-batch", "-nx", "-q",
                 "-ex", "set pagination off", "-ex", "thread apply all bt"],
                target.pid, timeout)
            threads = parse_gdb(out, maps)
            if threads and any(t.frames for t in threads):
                return threads, "gdb", ""
            note = why_tool_failed("gdb", err or out)
        else:
            note = ("native function names unavailable: gdb is not installed; showing the "
                    "libraries found on each thread's stack")
        return scan_native(target.pid), "stack scan", note

    def _python_native(self, pid: int, timeout: float) -> tuple[list[ThreadStack], str, str]:
        """Python + native frames from py-spy or pystack, whichever suits the process; on
        failure nothing (faulthandler gives the Python frames), and why."""
        tools = []
        if self.py_spy:
            tools.append(("py-spy", [self.py_spy, "dump", "--pid", str(pid), "--native",
                                     "--json"]))
        if self.pystack:
            command = [sys.executable, "-m", "numdoctor.core.stacks._pystack_json", str(pid)]
            # pystack resolves symbols lazily: about twice as fast as py-spy on processes that
            # map huge libraries (libtorch), several times slower on small ones.
            big = code_size(pid) > PYSTACK_ABOVE
            tools.insert(0 if big else len(tools), ("pystack", command))
        if not tools:
            return [], "", ("native frames unavailable: neither py-spy nor pystack is installed "
                            "(pip install py-spy)")
        failures = []
        for name, command in tools:
            out, err, code = self._run(command, pid, timeout)
            if code == 0:
                try:
                    threads = parse_py_spy(json.loads(out), name)
                except ValueError:
                    failures.append(f"{name} printed no JSON")
                    continue
                if threads:
                    return threads, name, ""
            failures.append(why_tool_failed(name, err))
            if ptrace_denied(err):
                break  # the other tool would be refused the same way
        return [], "", "native frames unavailable: " + "; ".join(failures)

    def _run(self, command: list[str], pid: int, timeout: float) -> tuple[str, str, int]:
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, errors="replace")
        except OSError as exc:
            return "", str(exc), -1
        self.helpers.add(process.pid)
        try:
            out, err = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err = f"{err}\ntimed out after {timeout:g} s"
            code = -1
        finally:
            self.helpers.discard(process.pid)
            try:
                os.kill(pid, signal.SIGCONT)  # a tool that died mid-attach may leave it stopped
            except ProcessLookupError:
                pass
        return out, err, code

    # -- faulthandler ------------------------------------------------------------------------
    def _faulthandler(self, targets: list[Target], results: dict[int, ProcessStacks],
                      wait: float) -> None:
        sizes: dict[int, int] = {}
        for target in targets:
            if not target.dumpable:
                results[target.pid].notes.append(
                    "faulthandler dump not available: this interpreter did not load "
                    "numdoctor's sitecustomize (started with -I, -S or -E, or with a "
                    "PYTHONPATH that dropped it)")
                continue
            if not catches_signal(target.pid, self.dump_signal):
                results[target.pid].notes.append(
                    "faulthandler dump not requested: the program replaced numdoctor's "
                    f"handler for signal {self.dump_signal}")
                continue
            path = self.fh_path(target.pid)
            sizes[target.pid] = path.stat().st_size if path.exists() else 0
            try:
                os.kill(target.pid, self.dump_signal)
            except ProcessLookupError:
                sizes.pop(target.pid)
        deadline = time.monotonic() + wait
        pending = dict(sizes)
        grown: dict[int, int] = {}
        while pending and time.monotonic() < deadline:
            time.sleep(0.02)
            for pid in list(pending):
                size = self.fh_path(pid).stat().st_size
                if size > sizes[pid] and grown.get(pid) == size:
                    del pending[pid]  # grew, then stayed the same for one poll: complete
                grown[pid] = size
        for pid, before in sizes.items():
            text = read_from(self.fh_path(pid), before)
            if not text.strip():
                results[pid].notes.append(
                    f"no faulthandler dump within {wait:g} s (the process may be stopped, "
                    "or blocking signals)")
                continue
            _fatal, threads = parse_faulthandler(text)
            stacks = results[pid]
            stacks.faulthandler_text = text
            # The scan's threads (no Python frames) would show each thread a second time.
            stacks.threads = threads
            stacks.native = False
            stacks.sources = [s for s in stacks.sources if s in NATIVE_SOURCES] + \
                ["faulthandler"]


def _has_python_frames(stacks: ProcessStacks) -> bool:
    return any(f.kind == "python" for t in stacks.threads for f in t.frames)


def read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
