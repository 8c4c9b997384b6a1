"""The blocking system calls a waiting thread sits in, by number, for x86_64 and aarch64.

`/proc/<pid>/task/<tid>/syscall` gives the number and the six raw arguments of the call a
blocked thread is in. Only the calls a thread *waits* in are named here: what each argument
means for a wait (which fd, which child, whether a timeout was given) is decided in
`meaning()`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache

# Names by number. The generic (asm-generic/unistd.h) table serves aarch64 and riscv64.
_X86_64 = {
    0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 23: "select",
    24: "sched_yield", 34: "pause", 35: "nanosleep", 42: "connect", 43: "accept",
    44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4", 65: "semop",
    70: "msgrcv", 73: "flock", 128: "rt_sigtimedwait", 130: "rt_sigsuspend", 202: "futex",
    208: "io_getevents", 219: "restart_syscall", 220: "semtimedop", 230: "clock_nanosleep",
    232: "epoll_wait",
    247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
    288: "accept4", 299: "recvmmsg", 426: "io_uring_enter", 441: "epoll_pwait2",
    449: "futex_waitv",
}
_GENERIC = {
    4: "io_getevents", 22: "epoll_pwait", 32: "flock", 56: "openat", 63: "read", 64: "write",
    65: "readv", 67: "pread64", 72: "pselect6", 73: "ppoll", 95: "waitid", 98: "futex",
    101: "nanosleep", 115: "clock_nanosleep", 124: "sched_yield", 128: "restart_syscall",
    133: "rt_sigsuspend", 137: "rt_sigtimedwait", 188: "msgrcv", 192: "semtimedop",
    193: "semop", 202: "accept",
    203: "connect", 206: "sendto", 207: "recvfrom", 211: "sendmsg", 212: "recvmsg",
    242: "accept4", 243: "recvmmsg", 260: "wait4", 426: "io_uring_enter",
    441: "epoll_pwait2", 449: "futex_waitv",
}
_TABLES = {"x86_64": _X86_64, "amd64": _X86_64, "aarch64": _GENERIC, "arm64": _GENERIC,
           "riscv64": _GENERIC}

# Calls whose first argument is the fd the thread waits on.
FD_CALLS = frozenset({"read", "readv", "pread64", "recvfrom", "recvmsg", "recvmmsg", "accept",
                      "accept4", "write", "sendto", "sendmsg", "connect", "flock",
                      "epoll_wait", "epoll_pwait", "epoll_pwait2"})
# Calls that wait on an array of fds (poll) or fd sets (select).
POLL_CALLS = frozenset({"poll", "ppoll"})
SELECT_CALLS = frozenset({"select", "pselect6"})
SLEEP_CALLS = frozenset({"nanosleep", "clock_nanosleep"})
CHILD_CALLS = frozenset({"wait4", "waitid"})

# futex operations that wait (the low 7 bits of the op; 128 is FUTEX_PRIVATE_FLAG).
_FUTEX_WAITS = {0: "FUTEX_WAIT", 6: "FUTEX_LOCK_PI", 9: "FUTEX_WAIT_BITSET",
                11: "FUTEX_WAIT_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
TIMER_ABSTIME = 1


@cache
def table(machine: str | None = None) -> dict[int, str]:
    """Syscall names by number for `machine` (this machine's when None); {} when unknown."""
    return _TABLES.get((machine or platform.machine()).lower(), {})


def name(number: int | None, machine: str | None = None) -> str:
    if number is None:
        return ""
    return table(machine).get(number, f"syscall {number}")


def signed(value: int, bits: int = 32) -> int:
    """A raw register value read as a signed C int (or long with bits=64)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class Meaning:
    """What one blocking call's arguments say about the wait."""

    fd: int | None = None  # the fd waited on (first argument of read/recv/epoll_wait/...)
    fd_list_at: int | None = None  # poll/ppoll: address and count of the pollfd array
    fd_count: int = 0
    timed: bool | None = None  # None: the call has no timeout notion (read)
    timeout_at: int | None = None  # address of the timespec (clock_nanosleep, nanosleep)
    absolute: bool = False  # the timespec is a deadline, not a duration
    clock: int | None = None  # clock_nanosleep's clock id
    child: int | None = None  # wait4/waitid: the pid waited for (-1: any child)
    futex: int | None = None  # futex: the address waited on
    futex_op: str = ""


def meaning(call: str, args: tuple[int, ...]) -> Meaning:
    """Decode the raw arguments of a blocked call (`args` as /proc prints them)."""
    a = tuple(args) + (0,) * (6 - len(args))
    if call == "futex":
        op = a[1] & 0x7F
        if op in _FUTEX_WAITS:
            return Meaning(futex=a[0], futex_op=_FUTEX_WAITS[op], timed=a[3] != 0)
        return Meaning(futex=a[0], futex_op=f"op {op}", timed=a[3] != 0)
    if call == "futex_waitv":
        return Meaning(timed=a[3] != 0)
    if call in ("epoll_wait", "epoll_pwait"):
        return Meaning(fd=signed(a[0]), timed=signed(a[3]) >= 0)
    if call == "epoll_pwait2":
        return Meaning(fd=signed(a[0]), timed=a[3] != 0)
    if call in FD_CALLS:
        return Meaning(fd=signed(a[0]))
    if call == "poll":
        return Meaning(fd_list_at=a[0], fd_count=a[1], timed=signed(a[2]) >= 0)
    if call == "ppoll":
        return Meaning(fd_list_at=a[0], fd_count=a[1], timed=a[2] != 0)
    if call == "select":
        return Meaning(timed=a[4] != 0)
    if call == "pselect6":
        return Meaning(timed=a[4] != 0)
    if call == "clock_nanosleep":
        return Meaning(timeout_at=a[2], absolute=bool(a[1] & TIMER_ABSTIME), clock=a[0],
                       timed=True)
    if call == "nanosleep":
        return Meaning(timeout_at=a[0], timed=True)
    if call == "wait4":
        return Meaning(child=signed(a[0]), timed=False)
    if call == "waitid":
        idtype, ident = a[0], signed(a[1])
        return Meaning(child=ident if idtype == 1 else -1, timed=False)  # 1 = P_PID
    if call in ("pause", "rt_sigsuspend"):
        return Meaning(timed=False)
    if call == "rt_sigtimedwait":
        return Meaning(timed=a[2] != 0)
    if call == "semtimedop":
        return Meaning(timed=a[3] != 0)
    if call == "io_getevents":
        return Meaning(timed=a[4] != 0)
    return Meaning()
