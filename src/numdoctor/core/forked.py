"""A child process started by fork() rather than subprocess, seen as a Popen."""

from __future__ import annotations

import os
import signal


class ForkedChild:
    """The subset of subprocess.Popen that supervisors use, for a child this process forked
    itself (check's collector, the probe's forked program)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.status: int | None = None  # the raw wait status

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status, self.returncode = status, os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.status, self.returncode = status, os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
