"""Scenarios that run side by side take turns for their operations.

Two scenarios whose BLAS/OpenMP pools each size themselves to every CPU oversubscribe the
machine when their operations overlap. OpenBLAS and libgomp threads then spin-wait for
partners that are not scheduled: measured on 2 cores, a 300x300 SVD took 0.4-1.4 s instead of
17 ms, and two scenarios at once took longer than the same two one after the other. The time
then says nothing about the operation, and "slow" verdicts become noise.

So the scenarios import side by side (mostly one thread each), and each waits for its turn
before its timed operation and holds it until that part is over. The keeper passes the turn
on early when the holder's process tree goes idle (a deadlock: nothing left to measure, and
the supervisor is the one judging it) or holds it longer than TURN_LIMIT (a runaway that
must not stall the probe).

The protocol is one Unix socket: a scenario connects and blocks until it reads one byte;
closing the connection (after the timed part, or when its processes end) ends its turn. A
scenario that cannot connect runs without waiting. While it waits it touches the
supervisor's heartbeat file, so waiting is never mistaken for a hang.
"""

from __future__ import annotations

import collections
import os
import selectors
import socket
import struct
import threading
import time

import psutil

ENV_TURN = "NUMDOCTOR_PROBE_TURN"

# The holder's process tree used less CPU than this fraction of the last window: it waits
# on something (a deadlocked child, a lock) and the next scenario may run its operation.
IDLE_CPU_FRACTION = 0.05
IDLE_WINDOW = 0.25
# No turn lasts longer than this, however busy the holder.
TURN_LIMIT = 3.0

# What the scenario script runs before its timed operation (see scenarios.script). Kept to
# the standard library and inert without the environment variable.
WAIT_FOR_TURN = '''\
def _wait_for_turn():
    """Under numdoctor probe: wait until no other scenario runs its operation."""
    address = os.environ.get("NUMDOCTOR_PROBE_TURN")
    if not address:
        return None
    import socket
    heartbeat = os.environ.get("NUMDOCTOR_HEARTBEAT")
    turn = socket.socket(socket.AF_UNIX)
    try:
        turn.connect(address)
        turn.settimeout(0.1)
        while True:
            try:
                return turn if turn.recv(1) else None
            except socket.timeout:
                if heartbeat:
                    os.utime(heartbeat)  # waiting is not hanging
    except OSError:
        return None
'''


class TurnKeeper:
    """Grants turns first come, first served, from a thread of the probe's process."""

    def __init__(self, directory: str) -> None:
        self.address = os.path.join(directory, "turns")
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(self.address)
        self._server.listen(64)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        self._waiting: collections.deque[socket.socket] = collections.deque()
        self._open: set[socket.socket] = set()  # every connection not yet closed
        self._holder: socket.socket | None = None
        self._held_since = 0.0
        self._tree: TreeCpu | None = None
        self._stop = False
        self.turns = 0
        self.passed_idle = 0
        self.passed_limit = 0
        self._thread = threading.Thread(target=self._serve, name="numdoctor-turns",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        for conn in self._open:
            conn.close()
        self._server.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        try:
            os.unlink(self.address)
        except OSError:
            pass

    # -- the keeper's thread -----------------------------------------------------------------

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._server, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stop:
                for key, _ in sel.select(timeout=IDLE_WINDOW / 2 if self._holder else None):
                    if key.data == "accept":
                        self._accept(sel)
                    elif key.data == "wake":
                        os.read(self._wake_r, 64)
                    else:
                        self._closed(sel, key.fileobj)  # type: ignore[arg-type]
                if self._holder is not None:
                    self._check_holder(sel)
                if self._holder is None:
                    self._grant(sel)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        conn.setblocking(False)
        self._open.add(conn)
        self._waiting.append(conn)
        # Readable means closed: the scenario never writes.
        sel.register(conn, selectors.EVENT_READ, "conn")

    def _closed(self, sel: selectors.BaseSelector, conn: socket.socket) -> None:
        try:
            if conn.recv(64):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        sel.unregister(conn)
        conn.close()
        self._open.discard(conn)
        if conn is self._holder:
            self._holder = None
        elif conn in self._waiting:
            self._waiting.remove(conn)

    def _grant(self, sel: selectors.BaseSelector) -> None:
        while self._waiting:
            conn = self._waiting.popleft()
            try:
                conn.send(b"1")
            except OSError:
                sel.unregister(conn)
                conn.close()
                self._open.discard(conn)
                continue
            self._holder, self._held_since = conn, time.monotonic()
            self._tree = TreeCpu(_peer_pid(conn))
            self.turns += 1
            return

    def _check_holder(self, sel: selectors.BaseSelector) -> None:
        if time.monotonic() - self._held_since > TURN_LIMIT:
            self.passed_limit += 1
        elif self._tree is None or not self._tree.idle():
            return
        else:
            self.passed_idle += 1
        # The connection stays open (closing it would not stop the process); it is simply no
        # longer the one holding the turn.
        self._holder = None


class TreeCpu:
    """CPU seconds used by a process and its descendants, sampled over sliding windows."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.mark = (time.monotonic(), self._cpu())
        self.quiet_since: float | None = None  # start of the run of idle windows, if any

    def _cpu(self) -> float | None:
        if self.pid is None:
            return None
        try:
            root = psutil.Process(self.pid)
            total = 0.0
            for proc in (root, *root.children(recursive=True)):
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    continue
            return total
        except psutil.Error:
            return None

    def idle(self) -> bool:
        """Whether the last window of at least IDLE_WINDOW seconds was idle (False while the
        current window is still shorter)."""
        now = time.monotonic()
        started, cpu_then = self.mark
        if now - started < IDLE_WINDOW:
            return False
        cpu = self._cpu()
        self.mark = (now, cpu)
        if cpu is None or cpu_then is None or cpu < cpu_then:
            quiet = False  # a process of the tree ended: it was doing something
        else:
            quiet = cpu - cpu_then < IDLE_CPU_FRACTION * (now - started)
        if not quiet:
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = started
        return quiet

    def quiet_for(self) -> float:
        """Seconds the tree has been idle without a break, as of the last window."""
        return self.mark[0] - self.quiet_since if self.quiet_since is not None else 0.0


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
        return pid
    except (OSError, AttributeError):
        return None
