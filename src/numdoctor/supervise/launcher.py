"""Start the program as our child in its own session, and find and kill its whole tree.

Three mechanisms keep the tree ours, so that a kill leaves no orphan:

- the program starts in a new session (and process group), so signals can go to the group;
- we are a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): a process whose parent dies (the
  classic daemonising double fork, `setsid` included) is re-parented to us instead of init,
  so every live process of the tree stays our descendant;
- the program gets `PR_SET_PDEATHSIG(SIGKILL)`: if numdoctor itself is killed, its direct child
  does not run on unsupervised.

Killing freezes the tree first (SIGSTOP, repeated until no new process appears), then sends
SIGKILL leaves first and reaps after every round.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
INJECT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inject")

# Environment variables the injected sitecustomize and numdoctor.heartbeat() read.
ENV_RUN_DIR = "NUMDOCTOR_RUN_DIR"
ENV_DUMP_SIGNAL = "NUMDOCTOR_DUMP_SIGNAL"
ENV_HEARTBEAT = "NUMDOCTOR_HEARTBEAT"
ENV_HANG_TIMEOUT = "NUMDOCTOR_HANG_TIMEOUT"
ENV_SUPERVISOR = "NUMDOCTOR_SUPERVISOR_PID"
ENV_PTRACER = "NUMDOCTOR_SET_PTRACER"
ENV_INJECT_DIR = "NUMDOCTOR_INJECT_DIR"


def default_dump_signal() -> int:
    """A real-time signal for on-demand dumps: programs and libraries rarely use these (unlike
    SIGUSR1/SIGUSR2), so our handler is neither replaced nor mistaken for theirs."""
    override = os.environ.get("NUMDOCTOR_DUMP_SIGNAL")
    if override and override.isdigit():
        return int(override)
    return signal.SIGRTMAX - 5


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process. False where unsupported."""
    try:
        return _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def yama_ptrace_scope() -> int | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


class CommandNotFound(Exception):
    """The program could not be started; `exit_code` is what a shell would return."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Launch:
    """What the supervisor passes to the program's environment."""

    def __init__(self, run_dir: str, dump_signal: int, heartbeat_file: str,
                 hang_timeout: float | None) -> None:
        self.run_dir = run_dir
        self.dump_signal = dump_signal
        self.heartbeat_file = heartbeat_file
        self.hang_timeout = hang_timeout

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        # The injected directory goes first so our sitecustomize wins; it chains to the
        # user's own one further along sys.path.
        previous = env.get("PYTHONPATH")
        env["PYTHONPATH"] = INJECT_DIR + (os.pathsep + previous if previous else "")
        env[ENV_INJECT_DIR] = INJECT_DIR
        env[ENV_RUN_DIR] = self.run_dir
        env[ENV_DUMP_SIGNAL] = str(self.dump_signal)
        env[ENV_HEARTBEAT] = self.heartbeat_file
        env[ENV_SUPERVISOR] = str(os.getpid())
        if self.hang_timeout:
            env[ENV_HANG_TIMEOUT] = f"{self.hang_timeout:g}"
        # Under Yama ptrace_scope 1 only ancestors may attach; py-spy is our child, not the
        # program's ancestor, so each Python process names us (and our children) as allowed.
        if yama_ptrace_scope() == 1:
            env[ENV_PTRACER] = "1"
        return env


def spawn(command: Sequence[str], *, env: Mapping[str, str], stdout: int | None,
          stderr: int | None, cwd: str | None = None) -> subprocess.Popen:
    """Start `command` in a new session; stdin is inherited untouched."""
    libc = _libc()

    def in_child() -> None:  # runs between fork and exec: no allocation-heavy work
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


# -- the tree --------------------------------------------------------------------------------

def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    _, _, rest = raw.rpartition(")")
    return rest.split()


def process_state(pid: int) -> str | None:
    """One-letter state (R, S, D, Z, T...), or None when the process is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def parent_map() -> dict[int, int]:
    """pid -> ppid of every process we can see, in one pass over /proc."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields and len(fields) > 2:
            parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int, exclude: Iterable[int] = ()) -> list[int]:
    """Every descendant of `root` (children before grandchildren), minus `exclude` subtrees.

    The kernel's /proc/<pid>/task/<tid>/children would be cheaper but is often compiled out
    (CONFIG_PROC_CHILDREN); one pass over /proc/*/stat is what psutil does too.
    """
    parents = parent_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    skip = set(exclude)
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


def reap(expected: int | None = None) -> dict[int, int]:
    """Collect every exited child (orphans adopted as subreaper included), never blocking.

    Returns {pid: wait status}; the caller keeps the status of the program's main process.
    """
    statuses: dict[int, int] = {}
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
        self.survivors: list[int] = []  # pids still alive (D state, another user's)
        self.statuses: dict[int, int] = {}  # wait statuses reaped meanwhile


def kill_tree(root: int, *, group: int | None, exclude: Iterable[int] = (),
              deadline: float = 5.0) -> KillResult:
    """SIGKILL every process below `root` (our own pid: orphans re-parent to us) and `group`.

    Freezing first stops a forking loop from out-running the kill; leaves are killed before
    their parents so no process is re-parented mid-kill; every round reaps.
    """
    result = KillResult()
    skip = set(exclude)
    stop_at = time.monotonic() + deadline
    if group is not None:
        _signal_group(group, signal.SIGSTOP)
    # Freeze until the set of processes stops growing (a process may fork while we look).
    seen: list[int] = []
    for _ in range(10):
        tree = [p for p in descendants(root, skip) if alive(p)]
        fresh = [p for p in tree if p not in seen]
        for pid in fresh:
            _signal(pid, signal.SIGSTOP)
        seen.extend(fresh)
        if not fresh:
            break
    while time.monotonic() < stop_at:
        tree = [p for p in descendants(root, skip) if alive(p)]
        if group is not None:
            _signal_group(group, signal.SIGKILL)
        for pid in reversed(tree):  # deepest first
            if _signal(pid, signal.SIGKILL) and pid not in result.killed:
                result.killed.append(pid)
        result.statuses.update(reap())
        # Done when nothing is left, zombies included: a killed multi-threaded process shows
        # as a zombie before its threads are gone, and can only be reaped after that.
        if not descendants(root, skip):
            break
        time.sleep(0.01)
    result.statuses.update(reap())
    result.survivors = [p for p in descendants(root, skip) if alive(p)]
    return result


def terminate_tree(root: int, *, exclude: Iterable[int] = (), grace: float = 1.0) -> KillResult:
    """SIGTERM the tree below `root`, wait `grace` seconds, then kill what is left."""
    skip = set(exclude)
    tree = [p for p in descendants(root, skip) if alive(p)]
    for pid in reversed(tree):
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + grace
    while time.monotonic() < stop_at:
        statuses.update(reap())
        if not [p for p in descendants(root, skip) if alive(p)]:
            break
        time.sleep(0.02)
    result = kill_tree(root, group=None, exclude=skip)
    result.killed = sorted(set(tree) | set(result.killed))
    result.statuses.update(statuses)
    return result


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
