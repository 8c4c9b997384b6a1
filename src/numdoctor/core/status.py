"""How a supervised program ended: the `Status` of a run, and wait statuses read as a shell does.

`Status` is the one vocabulary every front end uses for what happened to a program (`run`'s
report and exit status, `isolate()`'s exceptions, the pytest plugin's outcomes, `probe`'s
verdicts). It is a `str` enum, so reports keep plain strings in JSON.
"""

from __future__ import annotations

import enum
import os
import signal


class Status(str, enum.Enum):
    """What happened to a supervised program."""

    OK = "ok"  # exited with status 0
    EXIT = "exit"  # exited with another status
    SIGNAL = "signal"  # ended by a signal that is not a crash (SIGTERM, SIGINT...)
    CRASH = "crash"  # ended by SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGKILL...
    OOM = "oom"  # killed by the kernel's OOM killer
    HANG = "hang"  # no progress and no CPU for --hang-timeout
    SPINNING = "spinning"  # no progress while a CPU stays busy
    TIMEOUT = "timeout"  # ran past --timeout
    DEADLOCK = "deadlock"  # proven never to continue (a lock cycle, a dead worker's task...)
    INTERRUPTED = "interrupted"  # stopped by the user (a second Ctrl-C)

    def __str__(self) -> str:
        return self.value

    @property
    def incident(self) -> bool:
        """numdoctor stopped the program (dumped its stacks and killed it)."""
        return self in _INCIDENTS

    @property
    def failed(self) -> bool:
        return self is not Status.OK


_INCIDENTS = frozenset({Status.HANG, Status.SPINNING, Status.TIMEOUT, Status.DEADLOCK,
                        Status.INTERRUPTED})
# Signals that mean the program crashed rather than was asked to stop.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGILL, signal.SIGKILL, signal.SIGSYS, signal.SIGTRAP})

# What the signals that end programs mean, in the words a shell prints.
SIGNAL_WORDS: dict[int, str] = {
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


def status_of(ended: Exit, *, oom_killed: bool = False) -> Status:
    """The Status of a program that ended on its own with `ended`."""
    if ended.signal is None:
        return Status.OK if ended.code == 0 else Status.EXIT
    if oom_killed:
        return Status.OOM
    return Status.CRASH if ended.signal in CRASH_SIGNALS else Status.SIGNAL
