"""Who waits for whom: the facts of a process tree at one moment, as plain data.

The collector (`numdoctor.core.waits.collect`) fills these from the kernel (/proc: per-thread
CPU, the syscall a thread sits in and its arguments, what its file descriptors are and which
process holds the other end of a pipe or socket), from the stacks the dump ladder took, from
the run directory (which process reaped which child, and how it ended) and from the source
files of the frames that wait. The analysis (`numdoctor.rules.hangs`) is a pure function of a
`TreeFacts`: it reads nothing else, so it is tested on facts written by hand or recorded from
real hangs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from numdoctor.core.stacks.model import Frame, ThreadStack


@dataclass
class Endpoint:
    """What one file descriptor of a process is, and who holds the other end."""

    fd: int
    kind: str  # "pipe", "unix", "tcp", "udp", "tty", "file", "eventfd", "other"
    inode: int | None = None
    text: str = ""  # "pipe:[123]", "127.0.0.1:41234 -> 127.0.0.1:29500", "/dev/pts/3"
    # The processes of the tree holding the other end (a pipe's other end is any holder of
    # the same inode; a socket's is its peer socket), as (pid, fd). Empty with
    # `peer_outside` set: the other end is outside the tree (a server, a terminal).
    peers: list[tuple[int, int]] = field(default_factory=list)
    peer_outside: str = ""  # "remote 10.0.0.2:5432", "terminal /dev/pts/3", "" when in tree
    peer_gone: bool = False  # the other end is closed: a read returns EOF, a write EPIPE


@dataclass
class LockSite:
    """A `with X:` block or an `X.acquire()` call found in a frame's source."""

    expression: str  # the lock as written: "lock_b", "self._lock", "cond"
    file: str
    line: int  # the line of the `with` statement or the acquire() call
    function: str = ""
    # Taking it blocks without a timeout (`with X:`, `X.acquire()`); False for
    # `X.acquire(timeout=...)` or `blocking=False`; None when not known.
    untimed: bool | None = None
    kind: str = ""  # "with" or "acquire"


@dataclass
class FrameContext:
    """What the source around one Python frame says (read by the collector with `ast`)."""

    file: str
    line: int
    function: str
    text: str = ""  # the source line, stripped
    calls: list[str] = field(default_factory=list)  # callees on the line, outermost first:
    # "print", "q.get", "time.sleep"
    acquiring: LockSite | None = None  # the frame is at this `with X:` / `X.acquire()`
    holding: list[LockSite] = field(default_factory=list)  # enclosing blocks, outermost first


@dataclass
class ThreadFacts:
    """What the kernel and the stacks say about one thread at the look."""

    tid: int  # the kernel's thread id; negative for a stack no kernel thread was matched to
    # (faulthandler names threads by their pthread id), which has no kernel facts
    name: str = ""  # the kernel's thread name (comm)
    state: str = ""  # the kernel's state letter: R, S, D, T, Z
    cpu: float | None = None  # CPUs this thread used over the window (per-thread stat)
    syscall: int | None = None  # the blocking syscall's number; None while running
    syscall_name: str = ""  # "futex", "read", "clock_nanosleep", ...
    args: tuple[int, ...] = ()  # the syscall's arguments, as /proc/<pid>/task/<tid>/syscall
    wchan: str = ""  # the kernel function it sleeps in
    waits_on: Endpoint | None = None  # the fd argument of read/recv/poll/..., resolved
    waits_on_more: list[Endpoint] = field(default_factory=list)  # poll's other fds
    timed: bool | None = None  # the wait has a timeout (futex/poll/select with one)
    futex: int | None = None  # futex: the address waited on (tells locks apart)
    child: int | None = None  # wait4/waitid: the pid waited for (-1: any child)
    sleep_left: float | None = None  # clock_nanosleep: seconds until it wakes
    sleep_requested: float | None = None  # a relative nanosleep: its whole duration
    stack: ThreadStack | None = None  # Python and native frames, innermost first
    contexts: list[FrameContext] = field(default_factory=list)  # per Python frame, innermost
    # first: the lock sites around it (only for threads that wait)

    @property
    def frames(self) -> list[Frame]:
        return self.stack.frames if self.stack is not None else []


@dataclass
class ProcessFacts:
    """One process of the tree at the look: its threads, its pipes and sockets."""

    pid: int
    ppid: int
    command: str = ""
    role: str = ""  # "main", "forked from 12", "child of 12", "re-parented to numdoctor"
    exe: str = ""  # the executable (/proc/<pid>/exe)
    python: bool = False
    cpu: float | None = None  # CPUs over the window, all threads together
    state: str = ""
    forked_from: int | None = None
    threads_at_fork: int | None = None  # threads the parent had when it forked this one
    started: float | None = None  # seconds after the supervision started
    # Environment that names a process's part in a job: RANK, LOCAL_RANK, WORLD_SIZE,
    # GROUP_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID, ... (values; never secrets)
    job: dict[str, str] = field(default_factory=dict)
    threads: list[ThreadFacts] = field(default_factory=list)
    fds: list[Endpoint] = field(default_factory=list)  # pipes and sockets only
    stack_notes: list[str] = field(default_factory=list)  # why stacks are missing or partial


@dataclass
class Fate:
    """A process that left the tree while it was watched."""

    pid: int
    ppid: int | None = None
    command: str = ""
    role: str = ""
    ended: float | None = None  # seconds after the supervision started
    # How it ended, when known: an exit status ("exited with status 1") or a signal.
    exit_code: int | None = None
    signal: int | None = None
    # Who told us: "numdoctor reaped it", "its parent pid N reaped it", "kernel OOM killer",
    # or "vanished" (gone, nobody said how).
    source: str = "vanished"
    oom_killed: bool = False
    last_stack: ThreadStack | None = None  # its main thread when last sampled, if ever
    job: dict[str, str] = field(default_factory=dict)  # its RANK etc., when seen alive


@dataclass
class TreeFacts:
    """The whole tree at one moment: what the hang analysis decides on."""

    taken: float  # seconds after the supervision started
    window: float  # seconds over which the CPU figures were measured
    main_pid: int
    processes: list[ProcessFacts] = field(default_factory=list)
    fates: list[Fate] = field(default_factory=list)
    idle_for: float | None = None  # seconds the whole tree has been idle, when known
    # Earlier samples of the same threads agreed (same frames, still blocked): the wait
    # is stable, not a moment caught in passing.
    confirmed: bool = False

    def process(self, pid: int) -> ProcessFacts | None:
        return next((p for p in self.processes if p.pid == pid), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeFacts:
        return _tree_from_dict(data)


_T = TypeVar("_T")


def _build(cls: type[_T], data: dict[str, Any], **replaced: Any) -> _T:
    """`cls(**data)` keeping only the fields `cls` has: facts recorded by another numdoctor
    version (a field added or dropped) still load."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in {**data, **replaced}.items() if k in names})


def _stack(data: dict[str, Any] | None) -> ThreadStack | None:
    if not data:
        return None
    return _build(ThreadStack, data, frames=[_build(Frame, f) for f in data.get("frames", [])])


def _endpoint(data: dict[str, Any] | None) -> Endpoint | None:
    if not data:
        return None
    return _build(Endpoint, data, peers=[tuple(p) for p in data.get("peers", [])])


def _site(data: dict[str, Any] | None) -> LockSite | None:
    return _build(LockSite, data) if data else None


def _endpoints(items: list[dict[str, Any]] | None) -> list[Endpoint]:
    return [e for e in map(_endpoint, items or []) if e is not None]


def _tree_from_dict(data: dict[str, Any]) -> TreeFacts:
    processes = []
    for p in data.get("processes", []):
        threads = []
        for t in p.get("threads", []):
            contexts = [_build(FrameContext, c, acquiring=_site(c.get("acquiring")),
                               holding=[_build(LockSite, h) for h in c.get("holding", [])])
                        for c in t.get("contexts", [])]
            threads.append(_build(ThreadFacts, t, args=tuple(t.get("args", ())),
                                  waits_on=_endpoint(t.get("waits_on")),
                                  waits_on_more=_endpoints(t.get("waits_on_more")),
                                  stack=_stack(t.get("stack")), contexts=contexts))
        processes.append(_build(ProcessFacts, p, threads=threads,
                                fds=_endpoints(p.get("fds"))))
    fates = [_build(Fate, f, last_stack=_stack(f.get("last_stack")))
             for f in data.get("fates", [])]
    return _build(TreeFacts, data, processes=processes, fates=fates)
