"""The dump ladder: where is every thread of every process, Python and native?

Rungs, from cheapest and most reliable to richest:

1. faulthandler, armed in every Python process by the injected sitecustomize: the supervisor
   sends the dump signal and the process writes all its threads' Python stacks into its own
   file. No privileges; written by C code from the signal handler, so it works while C code
   holds the GIL. Only processes that announced their handler (a `py-<pid>.info` file) and
   still catch the signal (`SigCgt` in /proc/<pid>/status) are signalled: for any other
   process a real-time signal would be fatal.
2. py-spy `dump --native --json` for Python processes: Python and native frames interleaved,
   with the library of each native frame, and which thread is running. Needs ptrace. pystack
   (when installed) does the same and also shows threads that never ran Python; it is tried
   first on processes that map very large libraries (PyTorch), where its lazy symbol lookup
   makes it about twice as fast, and as the fallback when py-spy fails.
3. gdb `thread apply all bt` for native (non-Python) processes, when gdb is installed.
4. A scan of each thread's stack through /proc (program counter + code addresses found on the
   stack): the libraries a thread is in, without function names. Approximate, but needs no
   tool, and works on our descendants under Yama ptrace_scope 1.

Each external tool runs under its own timeout and is followed by SIGCONT, in case a tool that
timed out left the process stopped. Why a rung was not available is recorded and reported.
"""

from __future__ import annotations

import ast
import bisect
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numdoctor.core.stacks.model import Frame, ProcessStacks, ThreadStack
from numdoctor.snapshot.libraries import MapEntry, read_maps

__all__ = ["Frame", "ProcessStacks", "ThreadStack"]

# -- faulthandler ----------------------------------------------------------------------------

_FH_THREAD = re.compile(
    r"^(?P<current>Current thread|Thread) (?P<id>0x[0-9a-fA-F]+)(?: \[(?P<name>[^\]]*)\])?"
    r" \(most recent call first\):$")
_FH_STACK = re.compile(r"^Stack \(most recent call first\):$")
_FH_FRAME = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+|\?\?\?) in (?P<fn>.*)$')
# Python >= 3.14 adds the native stack of the faulting thread.
_FH_NATIVE_HEAD = re.compile(r"^Current thread's C stack trace \(most recent call first\):$")
_FH_NATIVE = re.compile(r'^  Binary file "(?P<file>[^"]*)"(?:, at (?P<sym>\S+?))? '
                        r'\[(?P<addr>0x[0-9a-fA-F]+)\]$')
_FH_FATAL = re.compile(r"^Fatal Python error: (?P<what>.*)$")


def parse_faulthandler(text: str) -> tuple[str, list[ThreadStack]]:
    """(fatal error or "", threads) from faulthandler output, innermost frames first."""
    fatal = ""
    threads: list[ThreadStack] = []
    current: ThreadStack | None = None
    native: ThreadStack | None = None
    for line in text.splitlines():
        match = _FH_FATAL.match(line)
        if match:
            fatal = match["what"].strip()
            current = native = None
            continue
        match = _FH_THREAD.match(line)
        if match:
            current = ThreadStack(id=match["id"].lower(), name=match["name"] or "",
                                  current=match["current"] == "Current thread",
                                  source="faulthandler")
            threads.append(current)
            native = None
            continue
        if _FH_STACK.match(line):
            current = ThreadStack(id="?", current=True, source="faulthandler")
            threads.append(current)
            continue
        if _FH_NATIVE_HEAD.match(line):
            native = next((t for t in threads if t.current), None)
            current = None
            continue
        match = _FH_FRAME.match(line)
        if match and current is not None:
            lineno = match["line"]
            current.frames.append(Frame("python", match["fn"], match["file"],
                                        int(lineno) if lineno.isdigit() else None))
            continue
        match = _FH_NATIVE.match(line)
        if match and native is not None:
            symbol = (match["sym"] or "").split("+", 1)[0]
            # Native frames sit below the Python ones they were called from; faulthandler
            # prints them separately, so they go first (innermost) in our combined list.
            native.frames.insert(sum(f.kind == "native" for f in native.frames),
                                 Frame("native", symbol or match["addr"], match["file"]))
            continue
        if not line.strip():
            current = None if current is not None and current.frames else current
    return fatal, threads


def last_dump(text: str) -> str:
    """The most recent dump in a file that may hold several (one per signal)."""
    starts = [m.start() for m in re.finditer(
        r"^(?:Fatal Python error: |Current thread 0x|Thread 0x|Stack \()", text, re.M)]
    if not starts:
        return text
    # A dump is a run of thread blocks; a new one begins where a "Fatal" line or the first
    # thread block after a gap of non-dump text starts. Dumps we request are separated by
    # the offsets we record, so in practice this only matters for fatal errors.
    fatal = [m.start() for m in re.finditer(r"^Fatal Python error: ", text, re.M)]
    return text[fatal[-1]:] if fatal else text[starts[0]:]


# -- py-spy ----------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    override = os.environ.get("NUMDOCTOR_PY_SPY")
    if override:
        return override if os.access(override, os.X_OK) else None
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def find_pystack() -> bool:
    """pystack is used through its Python API, from this interpreter."""
    if os.environ.get("NUMDOCTOR_PYSTACK") == "0":
        return False
    import importlib.util

    try:
        return importlib.util.find_spec("pystack") is not None
    except (ImportError, ValueError):
        return False


# Executable code mapped by a process above which pystack is tried before py-spy.
PYSTACK_ABOVE = 150 * 2**20


def code_size(pid: int) -> int:
    """Bytes of executable file mappings of `pid` (a proxy for symbol-loading work)."""
    try:
        return sum(m.end - m.start for m in read_maps(pid)
                   if "x" in m.perms and m.path.startswith("/"))
    except OSError:
        return 0


def find_gdb() -> str | None:
    override = os.environ.get("NUMDOCTOR_GDB")
    if override is not None:  # "" turns gdb off (the stack scan is used instead)
        return override if override and os.access(override, os.X_OK) else None
    return shutil.which("gdb")


def parse_py_spy(data: Any, source: str = "py-spy") -> list[ThreadStack]:
    """Threads from py-spy's `dump --json` schema (pystack's output is converted to it)."""
    threads = []
    for item in data if isinstance(data, list) else []:
        frames = []
        for frame in item.get("frames", []):
            module = frame.get("module")
            if module:  # a native frame: `module` is the library
                name = frame.get("name", "")
                frames.append(Frame("native", "" if name in ("???", "??") else name, module))
            else:
                line = frame.get("line")
                frames.append(Frame("python", frame.get("name", ""), frame.get("filename", ""),
                                    line if isinstance(line, int) and line > 0 else None))
        thread_id = item.get("thread_id")
        native_id = item.get("os_thread_id")
        active = item.get("active")
        threads.append(ThreadStack(
            id=hex(thread_id) if isinstance(thread_id, int) else str(native_id),
            native_id=native_id,
            name=item.get("thread_name") or "",
            state="" if active is None else ("running" if active else "idle"),
            owns_gil=item.get("owns_gil"),
            frames=frames,
            source=source,
        ))
    return threads


def _why_tool_failed(tool: str, stderr: str) -> str:
    text = stderr.strip().splitlines()
    last = text[-1] if text else "no output"
    lowered = stderr.lower()
    if "permission" in lowered or "not permitted" in lowered or "eperm" in lowered:
        scope = _yama()
        detail = f"Yama ptrace_scope={scope}" if scope is not None else "no Yama restriction"
        return (f"{tool} could not attach: ptrace was denied ({detail}; containers need "
                f"CAP_SYS_PTRACE and a seccomp profile that allows ptrace): {last}")
    return f"{tool} failed: {last}"


def _yama() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None


# -- gdb -------------------------------------------------------------------------------------

_GDB_THREAD = re.compile(r'^Thread \d+ \(Thread (?P<id>0x[0-9a-f]+) \(LWP (?P<tid>\d+)\)'
                         r'(?: "(?P<name>[^"]*)")?\)')
_GDB_LWP = re.compile(r"^Thread \d+ \(LWP (?P<tid>\d+)\)")
_GDB_FRAME = re.compile(r"^#\d+\s+(?:(?P<addr>0x[0-9a-f]+) in )?(?P<fn>\S+) \(")
_GDB_FROM = re.compile(r" from (?P<lib>\S+)$")


def parse_gdb(text: str, maps: list[MapEntry]) -> list[ThreadStack]:
    threads: list[ThreadStack] = []
    current: ThreadStack | None = None
    index = _Addresses(maps)
    for line in text.splitlines():
        match = _GDB_THREAD.match(line) or _GDB_LWP.match(line)
        if match:
            groups = match.groupdict()
            current = ThreadStack(id=groups.get("id") or groups["tid"],
                                  native_id=int(groups["tid"]),
                                  name=groups.get("name") or "", source="gdb")
            threads.append(current)
            continue
        match = _GDB_FRAME.match(line)
        if match and current is not None:
            function = match["fn"]
            library = ""
            found = _GDB_FROM.search(line)
            if found:
                library = found["lib"]
            elif match["addr"]:
                library = index.library(int(match["addr"], 16))
            current.frames.append(Frame("native", "" if function == "??" else function,
                                        library))
    return threads


# -- /proc stack scan ------------------------------------------------------------------------


class _Addresses:
    """Map code addresses to the file mapped there (executable mappings only)."""

    def __init__(self, maps: list[MapEntry]) -> None:
        spans = sorted((m.start, m.end, m.path) for m in maps
                       if "x" in m.perms and m.path.startswith("/"))
        self.starts = [s[0] for s in spans]
        self.spans = spans

    def library(self, address: int) -> str:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.spans[i][1]:
            return self.spans[i][2]
        return ""


_SCAN_BYTES = 32 * 1024
_SCAN_FRAMES = 16


def scan_native(pid: int, maps: list[MapEntry] | None = None) -> list[ThreadStack]:
    """Per thread: its state and the libraries whose code its stack points into."""
    try:
        maps = maps if maps is not None else read_maps(pid)
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []
    index = _Addresses(maps)
    stack_maps = sorted((m.start, m.end) for m in maps if "w" in m.perms)
    threads = []
    try:
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        mem = -1
    try:
        for tid in tids:
            thread = ThreadStack(id=str(tid), native_id=tid, name=_read(pid, tid, "comm"),
                                 source="stack scan")
            threads.append(thread)
            syscall = _read(pid, tid, "syscall").split()
            wchan = _read(pid, tid, "wchan")
            if not syscall or syscall[0] == "running":
                thread.state = "running"
                continue
            thread.state = f"waiting ({wchan})" if wchan and wchan != "0" else "waiting"
            try:
                sp, pc = int(syscall[-2], 16), int(syscall[-1], 16)
            except (ValueError, IndexError):
                continue
            frames = [Frame("native", "", index.library(pc), approximate=True)]
            if mem >= 0:
                frames += _scan_words(mem, sp, stack_maps, index)
            thread.frames = _dedupe(frames)[:_SCAN_FRAMES]
    finally:
        if mem >= 0:
            os.close(mem)
    return threads


def _scan_words(mem: int, sp: int, stack_maps: list[tuple[int, int]],
                index: _Addresses) -> list[Frame]:
    i = bisect.bisect_right([s for s, _ in stack_maps], sp) - 1
    if i < 0 or not stack_maps[i][0] <= sp < stack_maps[i][1]:
        return []
    length = min(stack_maps[i][1] - sp, _SCAN_BYTES)
    try:
        raw = os.pread(mem, length - length % 8, sp)
    except OSError:
        return []
    words = array("Q")
    words.frombytes(raw[: len(raw) - len(raw) % 8])
    frames = []
    for word in words:
        library = index.library(word)
        if library:
            frames.append(Frame("native", "", library, approximate=True))
    return frames


def _dedupe(frames: list[Frame]) -> list[Frame]:
    """Each library once, in the order it first appears from the top of the stack: a scan
    cannot tell real return addresses from stale ones, so repeats carry no information."""
    out: list[Frame] = []
    seen: set[str] = set()
    for frame in frames:
        if frame.file and frame.file not in seen:
            seen.add(frame.file)
            out.append(frame)
    return out


def _read(pid: int, tid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/{name}", encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


# -- the ladder ------------------------------------------------------------------------------


@dataclass
class Target:
    """A process to dump, and what we know about it beforehand."""

    pid: int
    python: bool  # a Python interpreter (py-spy can read it)
    dumpable: bool  # announced a faulthandler dump handler (py-<pid>.info)


def catches(pid: int, signum: int) -> bool:
    """True when `pid` has a handler installed for `signum` (SigCgt in /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


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
             faulthandler_wait: float = 1.0) -> dict[int, ProcessStacks]:
        results = {t.pid: ProcessStacks(t.pid, python=t.python) for t in targets}
        started = time.monotonic()
        self._faulthandler(targets, results, faulthandler_wait)
        self.seconds["faulthandler"] = time.monotonic() - started
        started = time.monotonic()
        self._tools(targets, results, tool_timeout)
        self.seconds["native"] = time.monotonic() - started
        return results

    # rung 1
    def _faulthandler(self, targets: list[Target], results: dict[int, ProcessStacks],
                      wait: float) -> None:
        sizes: dict[int, int] = {}
        for target in targets:
            if not target.dumpable:
                if target.python:
                    results[target.pid].notes.append(
                        "faulthandler dump not available: this interpreter did not load "
                        "numdoctor's sitecustomize (started with -I, -S or -E, or with a "
                        "PYTHONPATH that dropped it)")
                continue
            if not catches(target.pid, self.dump_signal):
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
            for pid, before in list(pending.items()):
                size = self.fh_path(pid).stat().st_size
                if size > before and grown.get(pid) == size:
                    del pending[pid]  # grew, then stayed the same for one poll: complete
                grown[pid] = size
        for pid, before in sizes.items():
            text = _read_from(self.fh_path(pid), before)
            if not text.strip():
                results[pid].notes.append(
                    f"no faulthandler dump within {wait:g} s (the process may be stopped, "
                    "or blocking signals)")
                continue
            _fatal, threads = parse_faulthandler(text)
            results[pid].faulthandler_text = text
            results[pid].threads = threads
            results[pid].sources.append("faulthandler")

    # rungs 2-4
    def _tools(self, targets: list[Target], results: dict[int, ProcessStacks],
               timeout: float) -> None:
        workers = max(2, min(8, os.cpu_count() or 2))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(self._native, target, timeout): target for target in targets}
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
                    stacks.native = source in ("py-spy", "pystack", "gdb")
                    if source in ("py-spy", "pystack", "py-spy (Python frames)") or \
                            not stacks.threads:
                        _merge_names(threads, stacks.threads)
                        stacks.threads = threads
                    else:
                        stacks.threads.extend(threads)

    def _native(self, target: Target, timeout: float) -> tuple[list[ThreadStack], str, str]:
        if target.python:
            return self._python_native(target.pid, timeout)
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
            note = _why_tool_failed("gdb", err or out)
        else:
            note = ("native function names unavailable: gdb is not installed; showing the "
                    "libraries found on each thread's stack")
        return scan_native(target.pid), "stack scan", note

    def _python_native(self, pid: int, timeout: float) -> tuple[list[ThreadStack], str, str]:
        """Python + native frames from py-spy or pystack, whichever suits the process."""
        tools = []
        if self.py_spy:
            tools.append(("py-spy", [self.py_spy, "dump", "--pid", str(pid), "--native",
                                     "--json"]))
        if self.pystack:
            command = [sys.executable, "-m", "numdoctor.supervise._pystack_json", str(pid)]
            # pystack resolves symbols lazily: about twice as fast as py-spy on processes that
            # map huge libraries (libtorch), several times slower on small ones.
            big = code_size(pid) > PYSTACK_ABOVE
            tools.insert(0 if big else len(tools), ("pystack", command))
        if not tools:
            return scan_native(pid), "stack scan", (
                "native stacks unavailable: neither py-spy nor pystack is installed "
                "(pip install py-spy, or numdoctor[native]); showing the libraries found on "
                "each thread's stack")
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
            failures.append(_why_tool_failed(name, err))
        note = "native frames unavailable: " + "; ".join(failures)
        if self.py_spy:  # Python frames alone, without unwinding native code
            out, _err, code = self._run([self.py_spy, "dump", "--pid", str(pid), "--json"],
                                        pid, timeout)
            if code == 0:
                try:
                    return (parse_py_spy(json.loads(out)), "py-spy (Python frames)", note)
                except ValueError:
                    pass
        return scan_native(pid), "stack scan", note

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


def _merge_names(threads: list[ThreadStack], faulthandler: list[ThreadStack]) -> None:
    by_id = {t.id: t for t in faulthandler}
    for thread in threads:
        other = by_id.get(thread.id)
        if other is not None:
            thread.name = thread.name or other.name


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_fatal(run_dir: str) -> dict[int, tuple[str, list[ThreadStack], str]]:
    """Fatal-error dumps left by processes of the tree: {pid: (error, threads, raw text)}."""
    found = {}
    for path in Path(run_dir).glob("fh-*.txt"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "Fatal Python error: " not in text:
            continue
        chunk = last_dump(text)
        fatal, threads = parse_faulthandler(chunk)
        pid = int(path.stem.split("-", 1)[1])
        found[pid] = (fatal, threads, chunk)
    return found


def read_info(run_dir: str) -> dict[int, dict[str, Any]]:
    """{pid: info} from the py-<pid>.info files the injected sitecustomize wrote."""
    infos = {}
    for path in Path(run_dir).glob("py-*.info"):
        try:
            data = ast.literal_eval(path.read_text())
        except (OSError, ValueError, SyntaxError):
            continue
        if isinstance(data, dict) and isinstance(data.get("pid"), int):
            infos[data["pid"]] = data
    return infos
