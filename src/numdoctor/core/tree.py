"""A process tree we are responsible for: start it, keep it ours, find all of it, end it.

Three mechanisms keep a tree ours, so that a kill leaves no orphan:

- its first process starts in a new session (and process group), so signals reach the group,
  and so a process that leaves the tree by `setsid` is still found by its session id;
- a *child subreaper* (`PR_SET_CHILD_SUBREAPER`) adopts the tree's orphans: a process whose
  parent dies (the classic daemonising double fork) is re-parented to it instead of to init,
  so every live process stays a descendant of the subreaper. `numdoctor run`'s supervisor is
  the subreaper of its program; a pytest worker is the subreaper of its tests;
- the first process gets `PR_SET_PDEATHSIG(SIGKILL)`: if numdoctor itself is killed, the tree
  does not run on unsupervised.

Killing freezes the tree first (SIGSTOP, repeated until no new process appears, so a forking
loop cannot out-run the kill), then sends SIGKILL leaves first, and reaps what is ours.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence

from numdoctor.core.procfs import (
    ProcessEntry,
    alive,
    command_line,
    process_table,
    read_text,
)

# `check` kills its collector's tree with this module on its start-up path, and `run` starts
# its program with it: ctypes, subprocess and typing are imported only by what needs them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    import subprocess

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _libc_handle
    if _libc_handle is None:
        import ctypes

        try:
            _libc_handle = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc_handle


def preload() -> None:
    """Load libc's handle now: a process that forks many children loads it once for all."""
    _libc()


def _prctl(option: int, value: int) -> bool:
    libc = _libc()
    try:
        return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0
    except AttributeError:  # not Linux
        return False


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process. False where unsupported."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send `signum` to this process when its parent dies."""
    return _prctl(PR_SET_PDEATHSIG, signum)


class CommandNotFound(Exception):
    """The program could not be started; `exit_code` is what a shell would return."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def spawn(command: Sequence[str], *, env: Mapping[str, str], stdout: int | None,
          stderr: int | None, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start `command` in a new session, dying with us; stdin is inherited untouched."""
    import subprocess

    libc = _libc()

    def in_child() -> None:  # runs between fork and exec: no allocation-heavy work
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    try:
        return subprocess.Popen(
            list(command), stdin=None, stdout=stdout, stderr=stderr, env=dict(env), cwd=cwd,
            start_new_session=True, preexec_fn=in_child, close_fds=True,
        )
    except FileNotFoundError as exc:
        raise CommandNotFound(f"{command[0]}: command not found", 127) from exc
    except PermissionError as exc:
        raise CommandNotFound(f"{command[0]}: permission denied", 126) from exc
    except OSError as exc:  # ENOEXEC and friends
        raise CommandNotFound(f"{command[0]}: cannot execute ({exc.strerror})", 126) from exc


# -- finding the tree ------------------------------------------------------------------------

def descendants(root: int, exclude: Iterable[int] = ()) -> list[int]:
    """Every descendant of `root` (children before grandchildren), minus `exclude` subtrees.

    The kernel's /proc/<pid>/task/<tid>/children would be cheaper but is often compiled out
    (CONFIG_PROC_CHILDREN); one pass over /proc/*/stat is what psutil does too.
    """
    return _descendants(root, process_table(), set(exclude))


def _descendants(root: int, table: Mapping[int, ProcessEntry], skip: set[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    found: list[int] = []
    seen = {root}
    frontier = [root]
    while frontier:
        nxt = []
        for pid in frontier:
            for child in sorted(children.get(pid, ())):
                if child in skip or child in seen:
                    continue
                seen.add(child)
                found.append(child)
                nxt.append(child)
        frontier = nxt
    return found


def members(root: int, *, session: int | None = None, include_root: bool = False,
            exclude: Iterable[int] = ()) -> list[int]:
    """The live processes of a tree: `root` (if asked), its descendants, and every process
    of `session` (a member that left the tree by `setsid` is not in the session any more,
    but a subreaper keeps it a descendant). One pass over /proc answers all three."""
    skip = set(exclude)
    table = process_table()

    def live(pid: int) -> bool:
        entry = table.get(pid)
        return entry is not None and entry.state not in ("Z", "X")

    found = [root] if include_root and live(root) else []
    found += [p for p in _descendants(root, table, skip) if live(p)]
    if session is not None:
        known = set(found) | {os.getpid()}
        for pid, entry in table.items():
            if pid in known or pid in skip or (pid == root and not include_root):
                continue
            if entry.session == session and live(pid):
                found.append(pid)
    return found


def has_children() -> bool | None:
    """Whether this process has any child, from /proc/self/task/*/children (cheap); None where
    the kernel does not provide that file."""
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
                if fh.read().strip():
                    return True
    except OSError:
        return None
    return False


def describe(pid: int) -> str:
    """The command line of `pid` in one line, for reports. Not cut here: the report masks
    secrets first (a secret cut in half has no shape to recognise), then may shorten it."""
    words = command_line(pid) or [read_text(f"/proc/{pid}/comm").strip() or "?"]
    return " ".join(words).replace("\n", "\\n")


# -- reaping and killing ---------------------------------------------------------------------

def reap(pids: Iterable[int] | None = None) -> dict[int, int]:
    """Collect exited children without blocking: `pids` only, or (None) every child of ours,
    orphans adopted as a subreaper included. Returns {pid: wait status}."""
    statuses: dict[int, int] = {}
    if pids is not None:
        for pid in pids:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                statuses[done] = status
        return statuses
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        statuses[pid] = status
    return statuses


class KillResult:
    def __init__(self) -> None:
        self.killed: list[int] = []
        self.commands: dict[int, str] = {}  # pid -> command line, read before the kill
        self.survivors: list[int] = []  # still alive (D state, another user's)
        self.statuses: dict[int, int] = {}  # wait statuses reaped meanwhile

    def describe(self, pid: int) -> str:
        return f"{pid} ({self.commands.get(pid, '?')})"


def kill_tree(root: int, *, session: int | None = None, include_root: bool = False,
              exclude: Iterable[int] = (), reap_all: bool = False,
              deadline: float = 5.0) -> KillResult:
    """SIGKILL every process of the tree (see `members`).

    `reap_all`: we are the tree's subreaper, so every process of it is our child once its
    parent is gone; reap them all. Otherwise only `root` (when included) is ours to reap and
    the others are reaped by their parents or by init.
    """
    result = KillResult()
    skip = set(exclude)
    stop_at = time.monotonic() + deadline
    group_stopped = session is not None and _signal_group(session, signal.SIGSTOP)
    stopped: list[int] = []
    for _ in range(20):  # until the set stops growing: a process may fork while we look
        fresh = [p for p in members(root, session=session, include_root=include_root,
                                    exclude=skip) if p not in stopped]
        if not fresh:
            break
        for pid in fresh:
            result.commands[pid] = describe(pid)
            _signal(pid, signal.SIGSTOP)
        stopped.extend(fresh)
    ours = set(stopped) if reap_all else ({root} if include_root else set())
    # Nobody found once the root's own group (the session it leads) was stopped: nothing
    # was left that could fork (a fork racing the group signal is restarted by the kernel),
    # so the first kill round need not look again. `check` ends its collector this way.
    nobody = group_stopped and root == session and not stopped
    while True:
        tree = [] if nobody else members(root, session=session, include_root=include_root,
                                         exclude=skip)
        nobody = False
        if session is not None:
            _signal_group(session, signal.SIGKILL)
        for pid in reversed(tree):  # deepest first: none is re-parented mid-kill
            if pid not in result.commands:
                result.commands[pid] = describe(pid)
            if _signal(pid, signal.SIGKILL) and pid not in result.killed:
                result.killed.append(pid)
        result.statuses.update(reap(None if reap_all else ours))
        # Done when nothing is left, zombies of ours included: a killed multi-threaded
        # process shows as a zombie before its threads are gone, and is reaped after that.
        pending = [p for p in ours if p not in result.statuses and _exists(p)]
        if not tree and not pending:
            return result  # nothing left: the last look found no one
        if time.monotonic() >= stop_at:
            break
        time.sleep(0.01)
    result.statuses.update(reap(None if reap_all else ours))
    result.survivors = members(root, session=session, include_root=include_root, exclude=skip)
    return result


def terminate_tree(root: int, *, exclude: Iterable[int] = (), grace: float = 1.0,
                   reap_all: bool = True) -> KillResult:
    """SIGTERM the descendants of `root`, wait `grace` seconds, then kill what is left."""
    skip = set(exclude)
    tree = [p for p in descendants(root, skip) if alive(p)]
    commands = {pid: describe(pid) for pid in tree}
    for pid in reversed(tree):
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + grace
    while time.monotonic() < stop_at:
        statuses.update(reap(None if reap_all else ()))
        if not [p for p in descendants(root, skip) if alive(p)]:
            break
        time.sleep(0.02)
    result = kill_tree(root, exclude=skip, reap_all=reap_all)
    result.killed = sorted(set(tree) | set(result.killed))
    result.commands = {**commands, **result.commands}
    result.statuses.update(statuses)
    return result


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone."""
    return _signal_group(pgid, sig)
