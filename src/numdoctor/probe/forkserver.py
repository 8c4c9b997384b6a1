"""Fork servers: scenarios of one group start from an interpreter that imported its modules.

A group is an import order in one environment (the threading variables are read when the
runtimes load, so they belong to the group). The first scenario of a group starts the group's
server (`_zygote.py`), which imports the modules once; from then on each scenario is a fork
of it: a `numdoctor run` supervisor and its program, exactly as a fresh `numdoctor run --
python scenario.py` would have been, less the import. `probe --import torch --fork` spent
about a second per scenario importing torch.

A group whose modules fail to import, crash or hang while importing gets no server: its
scenarios run as fresh processes, where that failure is reported like any other. So does a
scenario whose forked supervisor does not answer.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from numdoctor.core.monitor import read_stat
from numdoctor.probe.turns import IDLE_WINDOW, TreeCpu

ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_zygote.py")

# A server that used no CPU for this long while importing is stuck: its group runs fresh.
IMPORT_IDLE_LIMIT = 5.0
# The servers together hold at most this share of the memory available when the probe began
# (a torch server is a few hundred MiB; a matrix of four frameworks has dozens of groups).
MEMORY_SHARE = 0.25
# A scenario whose tree has been idle (turns.TreeCpu) for IDLE_AFTER seconds gives its CPU
# share back; polled every IDLE_POLL seconds, one idle window each.
IDLE_AFTER = 0.5
IDLE_POLL = IDLE_WINDOW


class Finished:
    """What a forked `numdoctor run` left: its exit status and its two output streams."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class _Server:
    def __init__(self, address: str, process: subprocess.Popen[bytes], log: str) -> None:
        self.address = address
        self.process = process
        self.log = log
        self.rss = 0  # bytes, once ready

    def measure(self) -> None:
        try:
            with open(f"/proc/{self.process.pid}/statm", "rb") as fh:
                self.rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            self.rss = 0

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # EOF: the server's loop returns
                self.process.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for path in (self.address, self.log):
            try:
                os.unlink(path)
            except OSError:
                pass


class ForkServers:
    """One server per group, started on first use; at most `keep` alive at once, and no more
    than MEMORY_SHARE of the available memory (the least recently used stops first)."""

    def __init__(self, directory: str, *, keep: int = 4) -> None:
        import psutil

        self.directory = directory
        self.keep = max(1, keep)
        self.memory = int(psutil.virtual_memory().available * MEMORY_SHARE)
        self._servers: collections.OrderedDict[tuple, _Server] = collections.OrderedDict()
        self._failed: set[tuple] = set()
        self._starting: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self.notes: list[str] = []  # why groups run fresh

    def run(self, imports: Sequence[str], env: Mapping[str, str], argv: Sequence[str], *,
            cwd: str, limit: float,
            idle: Callable[[], None] | None = None) -> Finished | None:
        """`numdoctor run ARGV` in a fork of the group's server, or None when the group has
        no server (the caller then runs it fresh). `idle`: called once when the program's
        tree has gone idle (it no longer needs its CPU)."""
        server = self._server(tuple(imports), dict(env), limit)
        if server is None:
            return None
        stdout, stderr = os.path.join(cwd, "run.stdout"), os.path.join(cwd, "run.stderr")
        request = {"argv": list(argv), "cwd": cwd, "stdout": stdout, "stderr": stderr}
        code = _request(server.address, request, limit, idle)
        if code is None:
            return None
        return Finished(code, _read(stdout), _read(stderr))

    def prepare(self, groups: Sequence[tuple[Sequence[str], Mapping[str, str]]], *,
                limit: float) -> None:
        """Start the servers of the first `keep` distinct `groups` in the background, so that
        their imports overlap with scenarios that are running instead of waiting for them."""
        distinct: dict[tuple, tuple[Sequence[str], Mapping[str, str]]] = {}
        for imports, env in groups:
            distinct.setdefault(_group(imports, env), (imports, env))
        for key, (imports, env) in list(distinct.items())[:self.keep]:
            with self._lock:
                if key in self._servers or key in self._failed or key in self._starting:
                    continue
            threading.Thread(target=self._server, args=(tuple(imports), dict(env), limit),
                             daemon=True, name="numdoctor-fork-server-start").start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._servers = list(self._servers.values()), collections.OrderedDict()
        for server in servers:
            server.stop()

    # -- starting servers ---------------------------------------------------------------------
    def _server(self, imports: tuple[str, ...], env: dict[str, str],
                limit: float) -> _Server | None:
        key = _group(imports, env)
        with self._lock:
            if key in self._failed:
                return None
            if key in self._servers:
                self._servers.move_to_end(key)
                return self._servers[key]
            starting = self._starting.setdefault(key, threading.Lock())
        with starting:  # one start per group, whoever asks first
            with self._lock:
                if key in self._servers:
                    return self._servers[key]
                if key in self._failed:
                    return None
                self._count += 1
                number = self._count
            server, why = _start(self.directory, number, imports, env, limit)
            evicted: list[_Server] = []
            with self._lock:
                closed = self._closed
                if server is None and not closed:
                    self._failed.add(key)
                    self.notes.append(f"import {', '.join(imports)}: {why}; its scenarios ran "
                                      "as fresh processes")
                if server is None or closed:  # (started in the background, too late)
                    if server is not None:
                        server.stop()
                    return None
                self._servers[key] = server
                while len(self._servers) > 1 and (
                        len(self._servers) > self.keep
                        or sum(s.rss for s in self._servers.values()) > self.memory):
                    evicted.append(self._servers.popitem(last=False)[1])
        for old in evicted:  # its running scenarios are forks of their own: unaffected
            old.stop()
        return server


def _group(imports: Sequence[str], env: Mapping[str, str]) -> tuple:
    """A server's key: its import order and its whole environment."""
    return tuple(imports), tuple(sorted(env.items()))


def _start(directory: str, number: int, imports: tuple[str, ...], env: dict[str, str],
           limit: float) -> tuple[_Server | None, str]:
    address = os.path.join(directory, f"z{number}.sock")
    log = os.path.join(directory, f"z{number}.log")
    with open(log, "wb") as err:
        try:
            process = subprocess.Popen([sys.executable, ZYGOTE, address, *imports], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=err, cwd=directory, start_new_session=True)
        except OSError as exc:
            return None, f"the fork server did not start ({exc})"
    server = _Server(address, process, log)
    why = _wait_ready(process, limit)
    if why:
        server.stop()
        return None, why
    server.measure()
    return server, ""


def _wait_ready(process: subprocess.Popen[bytes], limit: float) -> str:
    """'' once the server says it is ready, else why it never will."""
    assert process.stdout is not None
    deadline = time.monotonic() + limit
    cpu, since = _cpu(process.pid), time.monotonic()
    pending = b""
    while True:
        ready, _, _ = select.select([process.stdout], [], [], 0.25)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                process.wait()
                return f"importing failed in the fork server (exit status {process.returncode})"
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:  # a module may print while it imports
                try:
                    if json.loads(line).get("ready"):
                        return ""
                except (ValueError, AttributeError):
                    continue
        now = time.monotonic()
        used = _cpu(process.pid)
        if used != cpu:
            cpu, since = used, now
        elif now - since > IMPORT_IDLE_LIMIT:
            return "importing hung in the fork server"
        if now > deadline:
            return "importing took too long in the fork server"


def _cpu(pid: int) -> float | None:
    stat = read_stat(pid)
    return stat.cpu if stat else None


def _request(address: str, request: dict, limit: float,
             idle: Callable[[], None] | None = None) -> int | None:
    """Send one scenario to the server; its `numdoctor run` exit status, or None when the
    forked supervisor did not answer (it is then ended with its program). `idle` is called
    once, when the program's tree has used next to no CPU for IDLE_AFTER seconds."""
    pids: dict[str, int] = {}
    tree: TreeCpu | None = None
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10.0)
            conn.connect(address)
            conn.sendall(json.dumps(request).encode() + b"\n")
            deadline = time.monotonic() + limit
            pending = b""
            while True:
                if tree is not None and idle is not None:
                    tree.idle()
                    if tree.quiet_for() >= IDLE_AFTER:
                        idle()
                        idle = None
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(min(left, IDLE_POLL))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "exit" in message:
                        return int(message["exit"])
                    pids.update({k: int(v) for k, v in message.items()
                                 if k in ("pid", "program")})
                    if "program" in pids and tree is None:
                        tree = TreeCpu(pids["program"])
    except (OSError, ValueError):
        pass
    _end(pids)
    return None


def _end(pids: dict[str, int]) -> None:
    """Kill a supervisor that did not answer, and its program's session."""
    if "program" in pids:
        try:
            os.killpg(pids["program"], signal.SIGKILL)
        except OSError:
            pass
    if "pid" in pids:
        try:
            os.kill(pids["pid"], signal.SIGKILL)
        except OSError:
            pass


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
