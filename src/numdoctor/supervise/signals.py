"""Signals the supervisor receives, turned into events its main loop handles.

Handlers only record the signal; a self-pipe (`signal.set_wakeup_fd`) wakes the main loop's
`select()` at once. What the loop does with them:

- SIGINT, SIGTERM, SIGHUP, SIGQUIT: forwarded to the program's process group (it runs in its
  own session, so the terminal's Ctrl-C reaches only us). A second SIGINT or SIGTERM means
  "stop it": numdoctor dumps the stacks quickly and kills the whole tree; a third skips the
  dump.
- SIGTSTP (Ctrl-Z): the program's group is stopped with SIGSTOP (a group in another session
  ignores SIGTSTP), then numdoctor stops itself; SIGCONT resumes both. Stopped time does not
  count towards --timeout or --hang-timeout.
- SIGWINCH: the window size is copied to the program's pseudo-terminal and forwarded.
- SIGCHLD: wakes the loop to reap.

A signal that was ignored when numdoctor started (SIGINT under `nohup` or `&`) stays ignored,
and so the program inherits it ignored, as it would without numdoctor.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
STOPPING = (signal.SIGINT, signal.SIGTERM)
_WATCHED = (*FORWARDED, signal.SIGCHLD, signal.SIGWINCH, signal.SIGTSTP, signal.SIGCONT)


class Signals:
    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.counts: Counter[int] = Counter()
        self._received: list[int] = []
        self._previous: dict[int, object] = {}
        self._old_wakeup = -1
        self.active = threading.current_thread() is threading.main_thread()
        if not self.active:
            return  # signals can only be handled in the main thread; the loop polls instead
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in _WATCHED:
            previous = signal.getsignal(sig)
            if previous == signal.SIG_IGN and sig in FORWARDED:
                continue
            self._previous[sig] = previous
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self._received.append(signum)
        self.counts[signum] += 1

    def take(self) -> list[int]:
        """Signals received since the last call, in order."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        received, self._received = self._received, []
        return received

    def stop_requests(self) -> int:
        """How many SIGINT/SIGTERM arrived in total."""
        return sum(self.counts[s] for s in STOPPING)

    def restore(self) -> None:
        if self.active:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)  # type: ignore[arg-type]
            signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self.read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
