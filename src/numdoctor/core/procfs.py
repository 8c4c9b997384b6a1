"""Reading /proc: one place for the files every part of numdoctor looks at.

Processes and threads come and go while we read; every reader returns None, "" or an empty
list for a process that is gone or unreadable, and never raises for that.
"""

from __future__ import annotations

import collections
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

_STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "Z": "zombie", "T": "stopped",
           "t": "tracing-stop", "X": "dead", "I": "idle", "W": "waking", "P": "parked"}


def state_word(letter: str) -> str:
    """'sleeping' for 'S': the state letters of /proc/<pid>/stat in words."""
    return _STATES.get(letter, letter)


def read_text(path: str) -> str:
    """The file's text, or "" when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stat_fields(pid: int, tid: int | None = None) -> list[str] | None:
    """Fields of /proc/<pid>[/task/<tid>]/stat after the command name (which may hold
    spaces and parentheses), so that field 3 of proc(5), the state, is item 0."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    # os.read rather than open(): a look at a tree reads every process's stat file, and the
    # file objects cost more than the read (a stat line is a few hundred bytes).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    _, _, rest = raw.rpartition(")")
    return rest.split()


def process_state(pid: int) -> str | None:
    """One-letter state (R, S, D, Z, T...), or None when the process is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


class ProcessEntry:
    """What one pass over /proc tells of a process. (A plain class: typing.NamedTuple would
    import typing before the supervised program starts.)"""

    __slots__ = ("ppid", "session", "state")

    def __init__(self, state: str, ppid: int, session: int) -> None:
        self.state = state  # one letter, as process_state
        self.ppid = ppid
        self.session = session


def process_table() -> dict[int, ProcessEntry]:
    """State, parent and session of every process we can see, in one pass over /proc (in
    /proc's order): one read of each stat file answers all three."""
    table: dict[int, ProcessEntry] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields and len(fields) > 3:
            try:
                table[int(name)] = ProcessEntry(fields[0], int(fields[1]), int(fields[3]))
            except ValueError:
                continue
    return table


def parent_map() -> dict[int, int]:
    """pid -> ppid of every process we can see, in one pass over /proc."""
    return {pid: entry.ppid for pid, entry in process_table().items()}


def session_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    try:
        return int(fields[3]) if fields else None
    except (IndexError, ValueError):
        return None


def command_line(pid: int) -> list[str]:
    raw = read_text(f"/proc/{pid}/cmdline")
    return raw.split("\0")[:-1] if raw else []


def thread_ids(pid: int | str = "self") -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def thread_file(pid: int | str, tid: int, name: str) -> str:
    """/proc/<pid>/task/<tid>/<name>, stripped ("" when unreadable)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/{name}", encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def stack_pointer(pid: int | str, tid: int) -> tuple[int, int] | None:
    """(sp, pc) of a thread blocked in a syscall, or None if it is running or unreadable."""
    fields = thread_file(pid, tid, "syscall").split()
    if len(fields) < 3 or fields[0] == "running":
        return None
    try:
        return int(fields[-2], 16), int(fields[-1], 16)
    except ValueError:
        return None


if TYPE_CHECKING:
    class MapEntry(NamedTuple):
        start: int
        end: int
        perms: str
        path: str
else:  # the same at run time, without importing typing (see ProcessEntry)
    MapEntry = collections.namedtuple("MapEntry", "start end perms path")


def read_maps(pid: int | str = "self") -> list[MapEntry]:
    """Parse /proc/<pid>/maps. Raises OSError when it cannot be read."""
    entries = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            start, _, end = parts[0].partition("-")
            path = parts[5].strip() if len(parts) == 6 else ""
            entries.append(MapEntry(int(start, 16), int(end, 16), parts[1], path))
    return entries


def catches_signal(pid: int, signum: int) -> bool:
    """True when `pid` has a handler installed for `signum` (SigCgt in /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def yama_ptrace_scope() -> int | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None
