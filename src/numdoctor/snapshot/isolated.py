"""Collect a Snapshot in a fresh subprocess that first imports the named modules.

An import that raises, hangs or crashes the child is recorded as an ImportAttempt (the rules
turn it into a finding); the remaining modules are then collected in a new child without the
culprit, so the report still describes everything else.

The child is watched with the supervision core (numdoctor.core): its own session, a run
directory its faulthandler writes into, the dump ladder (py-spy's Python and native frames,
faulthandler where it cannot attach) for an import that hangs, the tree killed as a whole,
the exit status read as a shell does.

The child only reads what needs the live process (`live_facts`); this process assembles the
Snapshot. While the child imports, a low-priority thread of this process reads the machine's
facts and watches the child's memory map, reading the owner and NumPy build of each library
as it is mapped, so that little is left to do once the imports are over.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from numdoctor.core.forked import ForkedChild

# This module sits on the start-up path of `numdoctor check`, before the collector forks:
# the dataclass models, subprocess and the collector are imported only where they are used.
if TYPE_CHECKING:
    import subprocess

    from numdoctor.core.rundir import RunDir
    from numdoctor.snapshot.model import ImportAttempt, Snapshot, SystemInfo

Progress = Callable[[dict], None]

# How often the parent reads the importing child's memory map for new libraries.
_WATCH_INTERVAL = 0.05


class _ChildResult:
    def __init__(self) -> None:
        self.live: dict | None = None  # the child's live facts, when it finished
        self.failed_module: str | None = None  # being imported when the child hung or died
        self.failure: ImportAttempt | None = None
        self.completed: list[dict] = []
        self.attempts: list[dict] = []


def collect_isolated(
    imports: list[str],
    *,
    timeout: float = 120.0,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
    while_waiting: Callable[[], object] | None = None,
    scan_abi: bool = False,
    confirm_abi: bool = False,
) -> Snapshot:
    """Import `imports` in order in a subprocess, then collect there.

    `timeout` bounds each import and the collection itself. `while_waiting` runs once, in
    this process, as soon as the first child has started (to overlap the caller's own
    start-up work with the child's imports).
    """
    failures: list[ImportAttempt] = []
    remaining = list(imports)
    system: SystemInfo | None = None
    while True:
        result, system = _run_child(remaining, timeout, progress, env, while_waiting, system)
        while_waiting = None
        from numdoctor.snapshot.model import ImportAttempt, Snapshot

        if result.live is not None:
            from numdoctor.snapshot.collect import assemble

            snapshot = assemble(result.live, collected_by="subprocess", system=system,
                                scan_abi=scan_abi, confirm_abi=confirm_abi)
            snapshot.imports = _merge(imports, failures,
                                      [ImportAttempt(**a) for a in result.attempts])
            return snapshot
        assert result.failure is not None
        failures.append(result.failure)
        if result.failed_module is None or result.failed_module not in remaining:
            # The collector itself failed after every import succeeded: report that.
            snapshot = Snapshot(collected_by="subprocess", created=time.time())
            snapshot.imports = _merge(imports, failures, [
                ImportAttempt(**{k: c[k] for k in ("module", "status", "seconds", "detail")})
                for c in result.completed
            ])
            snapshot.notes.append("the collector subprocess failed after the imports; "
                                  "the facts above are incomplete")
            return snapshot
        remaining.remove(result.failed_module)


def _merge(order: list[str], failures: list[ImportAttempt],
           attempts: list[ImportAttempt]) -> list[ImportAttempt]:
    by_module = {a.module: a for a in attempts}
    by_module.update({f.module: f for f in failures})
    merged = [by_module[m] for m in order if m in by_module]
    merged += [f for f in failures if f.module not in order]
    return merged


def _run_child(imports: list[str], timeout: float, progress: Progress | None,
               env: dict[str, str] | None, while_waiting: Callable[[], object] | None,
               system: SystemInfo | None) -> tuple[_ChildResult, SystemInfo | None]:
    from numdoctor.core.rundir import RunDir

    scratch = _Scratch(RunDir())
    read_fd, write_fd = os.pipe()
    try:
        args = {"imports": imports, "events_fd": write_fd, "run_dir": scratch.run_dir.path,
                "dump_signal": scratch.run_dir.dump_signal}
        if env is None and _can_fork(imports):
            child: subprocess.Popen | ForkedChild = _fork_child(args, read_fd, scratch)
        else:
            import subprocess

            with open(os.devnull, "wb") as devnull:
                child = subprocess.Popen(
                    [sys.executable, "-m", "numdoctor.snapshot._child", json.dumps(args)],
                    stdin=subprocess.DEVNULL, stdout=devnull, stderr=scratch.stderr,
                    pass_fds=(write_fd,), start_new_session=True, env=env,
                )
        os.close(write_fd)
        write_fd = -1
        result: _ChildResult | None = None
        try:
            background = _Background(imports, while_waiting, system, _MapsWatcher(child.pid))
            try:
                result = _supervise(child, read_fd, timeout, progress, scratch,
                                    background.imports_over)
            except BaseException:
                background.stop()  # its own error, if any, must not hide this one
                raise
            return result, background.join()
        finally:
            _kill_group(child, wait=result is None or result.live is None)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        scratch.close()


class _Background:
    """What this process does while the child imports, in a thread at the lowest priority.

    It runs the caller's `while_waiting`, reads the machine's facts, then reads the child's
    memory map every _WATCH_INTERVAL until the imports are over. On a machine with few CPUs
    the child's imports and its BLAS workers already want every CPU: at the default priority
    this work took 15-20 ms from the child's imports. At the lowest (Linux priorities are per
    thread) it runs in the gaps, and what is left runs at full speed once the child is done.
    """

    def __init__(self, imports: list[str], while_waiting: Callable[[], object] | None,
                 system: SystemInfo | None, watcher: _MapsWatcher) -> None:
        self.imports = imports
        self.while_waiting = while_waiting
        self.system = system
        self.watcher = watcher
        self.imports_over = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="numdoctor-background",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except (AttributeError, OSError):
                pass
            if self.while_waiting is not None:
                self.while_waiting()
            if self.system is None:
                from numdoctor.snapshot.collect import warm_up

                self.system = warm_up(self.imports)
            from numdoctor.core import tree  # noqa: F401  for _kill_group, loaded off its path
            while self.watcher.enabled and not self.imports_over.wait(_WATCH_INTERVAL):
                self.watcher.poll()
            self.watcher.poll()  # what the last import mapped
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc

    def join(self) -> SystemInfo | None:
        """The machine's facts, once the work is done; raises what the work raised."""
        self.imports_over.set()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.system

    def stop(self) -> None:
        self.imports_over.set()
        self.thread.join()


class _Scratch:
    """Where the child's traces go: the run directory (its faulthandler file) and an
    anonymous file for its stderr (memfd on Linux)."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir
        self.stderr = self._anonymous("numdoctor-stderr")

    @staticmethod
    def _anonymous(name: str) -> int:
        if hasattr(os, "memfd_create"):
            return os.memfd_create(name)
        import tempfile

        return os.dup(tempfile.TemporaryFile().fileno())

    def text(self, fd: int) -> str:
        try:
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0).decode("utf-8", "replace") if size else ""
        except OSError:
            return ""

    def fatal(self, pid: int) -> str:
        """faulthandler's traceback of a crash, if the child wrote one."""
        return self.run_dir.fatal_dump(pid)[2]

    def close(self) -> None:
        try:
            os.close(self.stderr)
        except OSError:
            pass
        self.run_dir.remove()


class _MapsWatcher:
    """Reads the importing child's /proc maps now and then and prefetches the file facts of
    newly mapped libraries (owner, NumPy build) into the caches `assemble` uses."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/maps"
        self.seen: set[str] = set()
        self.enabled = sys.platform == "linux"
        self.sys_path = [os.path.realpath(p or os.getcwd()) for p in sys.path]

    def poll(self) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                paths = {line[line.index("/"):].rstrip("\n") for line in fh if "/" in line}
            from numdoctor.snapshot.collect import prefetch

            new = paths - self.seen
            self.seen |= new
            prefetch(sorted(new), self.sys_path)
        except Exception:
            # Only a head start: a child we may not read, or gone, costs nothing but time.
            self.enabled = False


def _can_fork(imports: list[str]) -> bool:
    """Fork instead of starting an interpreter only when that child is as fresh as a new one.

    Forking saves a second interpreter start-up (about half of `check`'s own cost) but is
    only equivalent when this process has one thread, no numerical module loaded and none of
    the requested modules imported: true for the `numdoctor` command, not for a notebook.
    """
    from numdoctor.snapshot.known import KNOWN_FRAMEWORKS

    if not hasattr(os, "fork") or sys.platform != "linux":
        return False
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc to tell: a fresh interpreter is the safe choice
        return False
    if threading.active_count() != 1 or threads != 1:
        return False
    watched = {*KNOWN_FRAMEWORKS, "threadpoolctl", *(m.split(".")[0] for m in imports)}
    return not any(name.split(".")[0] in watched for name in sys.modules)


# Standard-library modules that the frameworks import and that this process needs too once
# the collector runs (dataclasses need inspect; the machine's facts platform and sysconfig):
# imported once before the fork, both processes have them. Nothing else is imported before
# the user's modules, as in a fresh interpreter.
_SHARED_STDLIB = ("inspect", "platform", "sysconfig")


def _fork_child(args: dict, read_fd: int, scratch: _Scratch) -> ForkedChild:
    # Fork first, import later: the child imports the collector after the user's modules
    # (as a spawned one does), while the parent prepares rules and renderers in parallel.
    import numdoctor.core.inject.sitecustomize  # noqa: F401  the child arms itself with it
    import numdoctor.snapshot._child as child_main

    for name in _SHARED_STDLIB:
        __import__(name)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return ForkedChild(pid)
    code = 70  # EX_SOFTWARE, should run() itself fail
    try:
        os.setsid()
        os.close(read_fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(scratch.stderr, 2)
        code = child_main.run(args)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(child: subprocess.Popen | ForkedChild, read_fd: int, timeout: float,
               progress: Progress | None, scratch: _Scratch,
               imports_over: threading.Event) -> _ChildResult:
    result = _ChildResult()
    current: str | None = None
    started = time.monotonic()
    buffer = b""
    while True:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            return _hung(child, current, timeout, scratch, result)
        ready, _, _ = select.select([read_fd], [], [], min(remaining, 0.5))
        if not ready:
            continue
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:  # the child closed the pipe: it exited or died
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            event = json.loads(line)
            kind = event.get("event")
            if progress is not None:
                progress({k: v for k, v in event.items() if k != "facts"})
            if kind == "import":
                current, started = event["module"], time.monotonic()
            elif kind == "imported":
                result.completed.append(event)
                current = None
            elif kind == "collect":
                current, started = None, time.monotonic()
                imports_over.set()
            elif kind == "done":
                # Everything is here; the child's exit is not waited for (see _kill_group).
                result.live, result.attempts = event["facts"], event["attempts"]
                return result
    from numdoctor.snapshot.model import ImportAttempt

    status = _wait_status(child)
    from numdoctor.core.status import from_wait_status

    result.failed_module = current
    result.failure = ImportAttempt(
        module=current or "(numdoctor collector)",
        status="crash",
        seconds=round(time.monotonic() - started, 3),
        detail=from_wait_status(status).describe(),
        traceback=_tail(scratch, scratch.fatal(child.pid)),
    )
    return result


def _hung(child: subprocess.Popen | ForkedChild, current: str | None, timeout: float,
          scratch: _Scratch, result: _ChildResult) -> _ChildResult:
    # Every thread's stack before the kill (the dead cannot be dumped), so the report says
    # where the import waits: Python and native frames, or faulthandler's Python ones.
    from numdoctor.core.stacks.ladder import Dumper, Target
    from numdoctor.supervise.report import format_stacks

    dumper = Dumper(scratch.run_dir.path, scratch.run_dir.dump_signal)
    stacks = dumper.dump([Target(child.pid, python=True, dumpable=True)], tool_timeout=5.0,
                         faulthandler_wait=2.0)[child.pid]
    _kill_group(child)
    from numdoctor.snapshot.model import ImportAttempt

    result.failed_module = current
    result.failure = ImportAttempt(
        module=current or "(numdoctor collector)",
        status="hang",
        seconds=timeout,
        detail=f"no progress for {timeout:g} s; the subprocess was killed",
        traceback=_tail(scratch, format_stacks(stacks) if stacks.threads else ""),
    )
    return result


def _wait_status(child: subprocess.Popen | ForkedChild) -> int:
    """The child's wait status once it has ended (Popen keeps only a return code)."""
    code = child.wait()
    if isinstance(child, ForkedChild) and child.status is not None:
        return child.status
    return -code if code < 0 else (code & 0xFF) << 8


def _kill_group(child: subprocess.Popen | ForkedChild, *, wait: bool = True) -> None:
    """Kill the child and whatever it started (nothing may outlive us).

    `wait=False` reaps the child in the background: one that has reported its facts may
    still be exiting, and unmapping a process that loaded torch takes the kernel tens of
    milliseconds that are not ours to wait for.
    """
    from numdoctor.core import tree

    killed = tree.kill_tree(child.pid, session=child.pid, include_root=wait)
    status = killed.statuses.get(child.pid)
    if status is not None:  # reaped by the kill: tell the child object
        if isinstance(child, ForkedChild):
            child.status = status
        child.returncode = os.waitstatus_to_exitcode(status)
    if not wait:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        threading.Thread(target=child.wait, name="numdoctor-reaper", daemon=True).start()
    else:
        child.wait()


def _tail(scratch: _Scratch, stacks: str, lines: int = 40) -> str:
    parts = []
    for label, text in (("stderr", scratch.text(scratch.stderr)), ("stacks", stacks)):
        text = text.strip()
        if text:
            parts.append(f"--- {label} (last lines) ---\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts)
