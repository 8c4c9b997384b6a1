"""Collect a Snapshot in a fresh subprocess that first imports the named modules.

An import that raises, hangs or crashes the child is recorded as an ImportAttempt (the rules
turn it into a finding); the remaining modules are then collected in a new child without the
culprit, so the report still describes everything else.
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
from pathlib import Path
from typing import TYPE_CHECKING

# This module sits on the start-up path of `numdoctor check`, before the collector forks:
# the dataclass models, subprocess and tempfile are imported only where they are used.
if TYPE_CHECKING:
    import subprocess

    from numdoctor.snapshot.model import ImportAttempt, Snapshot

Progress = Callable[[dict], None]


class _ChildResult:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.failed_module: str | None = None  # being imported when the child hung or died
        self.failure: ImportAttempt | None = None
        self.completed: list[dict] = []


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
    from numdoctor.snapshot.model import ImportAttempt, Snapshot

    failures: list[ImportAttempt] = []
    remaining = list(imports)
    while True:
        result = _run_child(remaining, timeout, progress, env, while_waiting,
                            {"scan_abi": scan_abi, "confirm_abi": confirm_abi})
        while_waiting = None
        if result.snapshot is not None:
            snapshot = result.snapshot
            snapshot.imports = _merge(imports, failures, snapshot.imports)
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
               env: dict[str, str] | None,
               while_waiting: Callable[[], object] | None,
               collect_options: dict | None = None) -> _ChildResult:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="numdoctor-") as tmp:
        tmpdir = Path(tmp)
        read_fd, write_fd = os.pipe()
        args = {
            "imports": imports,
            "events_fd": write_fd,
            "dump_file": str(tmpdir / "faulthandler.txt"),
            "result_file": str(tmpdir / "snapshot.json"),
            **(collect_options or {}),
        }
        stderr_path = tmpdir / "stderr.txt"
        if env is None and _can_fork(imports):
            child: subprocess.Popen | _ForkedChild = _fork_child(args, read_fd, stderr_path)
        else:
            import subprocess

            with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as devnull:
                child = subprocess.Popen(
                    [sys.executable, "-m", "numdoctor.snapshot._child", json.dumps(args)],
                    stdin=subprocess.DEVNULL, stdout=devnull, stderr=stderr,
                    pass_fds=(write_fd,), start_new_session=True, env=env,
                )
        os.close(write_fd)
        try:
            if while_waiting is not None:
                while_waiting()
            return _supervise(child, read_fd, timeout, progress, tmpdir, stderr_path)
        finally:
            os.close(read_fd)
            _kill_group(child)


def _can_fork(imports: list[str]) -> bool:
    """Fork instead of starting an interpreter only when that child is as fresh as a new one.

    Forking saves a second interpreter start-up (about half of `check`'s own cost) but is
    only equivalent when this process has one thread, no numerical module loaded and none of
    the requested modules imported: true for the `numdoctor` command, not for a notebook.
    """
    from numdoctor.snapshot.known import KNOWN_FRAMEWORKS

    if not hasattr(os, "fork") or sys.platform != "linux":
        return False
    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        return False
    watched = {*KNOWN_FRAMEWORKS, "threadpoolctl", *(m.split(".")[0] for m in imports)}
    return not any(name.split(".")[0] in watched for name in sys.modules)


class _ForkedChild:
    """The subset of Popen that the supervisor uses, for a forked collector."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _fork_child(args: dict, read_fd: int, stderr_path: Path) -> _ForkedChild:
    # Fork first, import later: the child imports the collector after the user's modules
    # (as a spawned one does), while the parent prepares rules and renderers in parallel.
    import numdoctor.snapshot._child as child_main

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _ForkedChild(pid)
    code = 70  # EX_SOFTWARE, should run() itself fail
    try:
        os.setsid()
        os.close(read_fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        code = child_main.run(args)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(child: subprocess.Popen | _ForkedChild, read_fd: int, timeout: float,
               progress: Progress | None, tmpdir: Path, stderr_path: Path) -> _ChildResult:
    result = _ChildResult()
    current: str | None = None
    started = time.monotonic()
    buffer = b""
    while True:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            return _hung(child, current, timeout, tmpdir, stderr_path, result)
        ready, _, _ = select.select([read_fd], [], [], min(remaining, 0.5))
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:  # the child closed the pipe: it exited or died
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            event = json.loads(line)
            if progress is not None:
                progress(event)
            kind = event.get("event")
            if kind == "import":
                current, started = event["module"], time.monotonic()
            elif kind == "imported":
                result.completed.append(event)
                current = None
            elif kind == "collect":
                current, started = None, time.monotonic()
    from numdoctor.snapshot.model import ImportAttempt, Snapshot

    code = child.wait()
    result_file = tmpdir / "snapshot.json"
    if code == 0 and result_file.exists():
        result.snapshot = Snapshot.from_dict(json.loads(result_file.read_text()))
        return result
    result.failed_module = current
    result.failure = ImportAttempt(
        module=current or "(numdoctor collector)",
        status="crash",
        seconds=round(time.monotonic() - started, 3),
        detail=_exit_description(code),
        traceback=_tail(tmpdir / "faulthandler.txt", stderr_path),
    )
    return result


def _hung(child: subprocess.Popen | _ForkedChild, current: str | None, timeout: float,
          tmpdir: Path, stderr_path: Path, result: _ChildResult) -> _ChildResult:
    # Ask faulthandler for every thread's stack before killing, so the report says where.
    dump = tmpdir / "faulthandler.txt"
    try:
        child.send_signal(signal.SIGUSR1)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and dump.stat().st_size == 0:
        time.sleep(0.05)
    time.sleep(0.1)
    _kill_group(child)
    from numdoctor.snapshot.model import ImportAttempt

    result.failed_module = current
    result.failure = ImportAttempt(
        module=current or "(numdoctor collector)",
        status="hang",
        seconds=timeout,
        detail=f"no progress for {timeout:g} s; the subprocess was killed",
        traceback=_tail(dump, stderr_path),
    )
    return result


def _kill_group(child: subprocess.Popen | _ForkedChild) -> None:
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()
        child.wait()
    else:
        # The child is gone, but anything it started in its session must not outlive us.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with status {code}"


def _tail(dump: Path, stderr_path: Path, lines: int = 40) -> str:
    parts = []
    for label, path in (("stderr", stderr_path), ("faulthandler", dump)):
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if text:
            parts.append(f"--- {label} (last lines) ---\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts)
