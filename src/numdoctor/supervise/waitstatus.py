"""Wait statuses: a shell-style exit code and the signal's name, like bash reports them."""

from __future__ import annotations

import os
import signal

# What the signals that end programs mean, in the words a shell prints.
SIGNAL_WORDS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGINT: "interrupted",
    signal.SIGHUP: "hangup",
    signal.SIGQUIT: "quit",
    signal.SIGPIPE: "broken pipe",
    signal.SIGTRAP: "trace/breakpoint trap",
    signal.SIGSYS: "bad system call",
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded",
    signal.SIGALRM: "alarm clock",
    signal.SIGUSR1: "user signal 1",
    signal.SIGUSR2: "user signal 2",
}


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"


class Exit:
    """How a process ended, as a shell reports it."""

    __slots__ = ("code", "core_dumped", "signal")

    def __init__(self, code: int, signal: int | None = None, core_dumped: bool = False) -> None:
        self.code = code  # what numdoctor exits with: the status, or 128+N for signal N
        self.signal = signal
        self.core_dumped = core_dumped

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exit) and (self.code, self.signal, self.core_dumped) == (
            other.code, other.signal, other.core_dumped)

    def __hash__(self) -> int:
        return hash((self.code, self.signal, self.core_dumped))

    def __repr__(self) -> str:
        return f"Exit(code={self.code}, signal={self.signal}, core_dumped={self.core_dumped})"

    @property
    def signal_name(self) -> str:
        return signal_name(self.signal) if self.signal else ""

    def describe(self) -> str:
        if self.signal is None:
            return f"exited with status {self.code}"
        words = SIGNAL_WORDS.get(self.signal, "")
        text = f"killed by {self.signal_name}" + (f" ({words})" if words else "")
        return text + (", core dumped" if self.core_dumped else "")


def from_wait_status(status: int) -> Exit:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return Exit(128 + number, number, os.WCOREDUMP(status))
    if os.WIFEXITED(status):
        return Exit(os.WEXITSTATUS(status))
    return Exit(1)
