"""Collect the wait facts of a process tree at one moment (`collect`).

What it costs: two reads of every thread's /proc stat `window` seconds apart (the wait in
between costs no CPU; no wait at all when an earlier look's reading still counts, see
`ThreadCpu`), one read of each thread's syscall and wchan, the fd table of each process, and,
only for threads that wait on an fd, the pipe/socket lookups; the source files of waiting
frames are parsed once per supervision (cached). The stacks come from the dump ladder
(`numdoctor.core.stacks.ladder.Dumper`), taken by the caller.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterable
from typing import Any

from numdoctor.core.stacks.model import ProcessStacks, ThreadStack
from numdoctor.core.waits import syscalls
from numdoctor.core.waits.endpoints import TreeFds, resolve
from numdoctor.core.waits.fates import _KernelEvent, merge_fates, read_fates
from numdoctor.core.waits.frames import is_stdlib, own_frames
from numdoctor.core.waits.model import (
    Endpoint,
    Fate,
    FrameContext,
    ProcessFacts,
    ThreadFacts,
    TreeFacts,
)
from numdoctor.core.waits.procfs import (
    environ_job,
    read_pollfds,
    read_text,
    read_timespec,
    syscall,
    thread_ids,
    thread_stat,
)
from numdoctor.core.waits.sources import context

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_CONTEXT_FRAMES = 12  # Python frames per thread whose source is read, innermost first


_Ticks = dict[int, dict[int, tuple[str, int, str]]]  # pid -> tid -> (state, ticks, comm)


class ThreadCpu:
    """The last reading of every thread's CPU ticks, kept between looks at one tree.

    Per-thread CPU needs two readings some time apart. A look at a tree that has been idle
    since an earlier look took its reading measures from that reading (over a longer span,
    and without waiting): the CPU a thread used since then is its CPU of the idle stretch.
    """

    def __init__(self) -> None:
        self.taken: float | None = None  # monotonic
        self.ticks: _Ticks = {}

    def since(self, start: float | None, pids: list[int], window: float,
              now: float) -> tuple[float, _Ticks] | None:
        """(taken, ticks) of the kept reading, when it was taken at or after `start` (the
        tree idle since), at least `window` seconds before `now`, and covers every process
        of `pids`."""
        if start is None or self.taken is None or self.taken < start or \
                now - self.taken < window or any(pid not in self.ticks for pid in pids):
            return None
        return self.taken, self.ticks


def collect(pids: Iterable[int], *, main_pid: int,
            stacks: dict[int, ProcessStacks] | Callable[[], dict[int, ProcessStacks]],
            roles: dict[int, str] | None = None, fates: Iterable[Fate] = (),
            started: float | None = None, window: float = 0.3, run_dir: str | None = None,
            idle_for: float | None = None, kernel: Iterable[_KernelEvent] = (),
            confirmed: bool = False, cpu: ThreadCpu | None = None) -> TreeFacts:
    """The facts of the tree `pids` (live processes, the main one included) now.

    `stacks` are the dump ladder's results by pid (missing pids are collected without
    frames), or a function that takes them: then the kernel's view of every thread is read
    first, and the stacks after it — a dump tool stops the process (ptrace), and a sleep it
    interrupts is resumed as `restart_syscall`, which no longer says how long is left;
    `roles` the supervisor's names for processes ("main", "forked from 12"); `fates` the
    processes the supervisor saw leave the tree (merged with the run directory's reaping
    records and the kernel's OOM records in `kernel`); `started` the `time.monotonic()` of the
    supervision start (times in the facts are relative to it; now when None); `window` the
    seconds over which per-thread CPU is measured (the call takes that long); `run_dir` the
    supervised run directory (fates, and which processes were forked); `idle_for` how long
    the whole tree has been idle, when the caller knows; `cpu` the readings kept between the
    looks at this tree: with the tree idle since the last one, the window is measured from it
    and the call does not wait.
    """
    now = time.monotonic()
    started = now if started is None else started
    pids = [p for p in dict.fromkeys(pids) if p > 0]
    earlier = cpu.since(None if idle_for is None else now - idle_for, pids, window, now) \
        if cpu is not None else None
    if earlier is not None:
        begun, before = earlier
    else:
        before = _cpu_ticks(pids)
        begun = time.monotonic()
        if window > 0:
            time.sleep(window)
    after = _cpu_ticks(pids)
    measured = max(time.monotonic() - begun, 1e-6)
    if cpu is not None:
        cpu.taken, cpu.ticks = time.monotonic(), after
    infos = _infos(run_dir)
    fd_index: TreeFds | None = None
    processes = []
    for pid in pids:
        if pid not in after:
            continue  # left the tree during the window
        process = _process(pid, main_pid, roles or {}, infos, started)
        process.job = environ_job(pid)
        total = 0.0
        for tid, (state, ticks, comm) in sorted(after[pid].items()):
            thread = ThreadFacts(tid=tid, name=comm, state=state)
            if tid in before.get(pid, {}):
                thread.cpu = round(max(0, ticks - before[pid][tid][1]) / _HZ / measured, 3)
                total += thread.cpu
            fd_index = _kernel_wait(pid, thread, pids, fd_index)
            process.threads.append(thread)
        process.cpu = round(total, 3)
        processes.append(process)
    dumps = stacks() if callable(stacks) else stacks
    for process in processes:
        stack = dumps.get(process.pid)
        if stack is not None:
            process.python = process.python or stack.python
            process.stack_notes = list(stack.notes)
        by_tid = _stacks_by_tid(process.pid, stack)
        for thread in process.threads:
            thread.stack = by_tid.pop(thread.tid, None)
        # Stacks that could not be matched to a thread id (faulthandler names threads by
        # their pthread id): kept, without kernel facts.
        for number, leftover in enumerate(by_tid.values(), 1):
            process.threads.append(ThreadFacts(tid=-number, name=leftover.name,
                                               stack=leftover))
        cwd = _cwd(process.pid)
        for thread in process.threads:
            if _waiting(thread):
                thread.contexts = _contexts(thread.stack, cwd)
        if fd_index is not None:
            process.fds = _pipes_and_sockets(process.pid, fd_index)
    taken = time.monotonic()
    return TreeFacts(taken=round(taken - started, 3), window=round(measured, 3),
                     main_pid=main_pid, processes=processes,
                     fates=merge_fates(read_fates(run_dir, started=started, kernel=kernel),
                                       fates),
                     idle_for=idle_for, confirmed=confirmed)


# -- per-thread CPU ----------------------------------------------------------------------------

def _cpu_ticks(pids: list[int]) -> _Ticks:
    found: _Ticks = {}
    for pid in pids:
        threads = {}
        for tid in thread_ids(pid):
            stat = thread_stat(pid, tid)
            if stat is not None:
                threads[tid] = stat
        if threads:
            found[pid] = threads
    return found


# -- the process -------------------------------------------------------------------------------

def _infos(run_dir: str | None) -> dict[int, dict[str, Any]]:
    if not run_dir:
        return {}
    from numdoctor.core.rundir import RunDir

    return RunDir(run_dir).infos()


def _process(pid: int, main_pid: int, roles: dict[int, str],
             infos: dict[int, dict[str, Any]],
             started: float) -> ProcessFacts:
    raw = read_text(f"/proc/{pid}/stat")
    fields = raw.rpartition(")")[2].split()
    ppid = int(fields[1]) if len(fields) > 1 else 0
    argv = [a for a in read_text(f"/proc/{pid}/cmdline").split("\0") if a]
    info = infos.get(pid, {})
    exe = _readlink(f"/proc/{pid}/exe")
    process = ProcessFacts(pid=pid, ppid=ppid, state=fields[0] if fields else "",
                           command=(shlex.join(argv) if argv else read_text(
                               f"/proc/{pid}/comm").strip()).replace("\n", "\\n")[:300],
                           exe=exe, python=bool(info))
    forked = info.get("forked_from")
    if forked is None and pid != main_pid and pid not in infos and exe and ppid > 1:
        # A native program forks without exec: same executable and command line as its parent.
        parent_argv = [a for a in read_text(f"/proc/{ppid}/cmdline").split("\0") if a]
        if _readlink(f"/proc/{ppid}/exe") == exe and parent_argv == argv:
            forked = ppid
    process.forked_from = forked
    process.threads_at_fork = info.get("threads_at_fork") if forked else None
    if pid in roles:
        process.role = roles[pid]
    elif pid == main_pid:
        process.role = "main"
    elif forked:
        process.role = f"forked from {forked}"
    else:
        process.role = f"child of {ppid}"
    if len(fields) > 19:
        try:
            boot_offset = time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)
            process.started = round(int(fields[19]) / _HZ + boot_offset - started, 3)
        except (ValueError, OSError, AttributeError):
            pass
    return process


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _cwd(pid: int) -> str:
    return _readlink(f"/proc/{pid}/cwd")


def _stacks_by_tid(pid: int, stacks: ProcessStacks | None) -> dict[int, ThreadStack]:
    if stacks is None:
        return {}
    by_tid: dict[int, ThreadStack] = {}
    unmatched = []
    for thread in stacks.threads:
        if thread.native_id:
            by_tid.setdefault(thread.native_id, thread)
        else:
            unmatched.append(thread)
    if unmatched and pid not in by_tid:
        # faulthandler lists the main thread last; a named MainThread is surer.
        main = next((t for t in unmatched if t.name == "MainThread"), unmatched[-1])
        by_tid[pid] = main
        unmatched.remove(main)
    for index, thread in enumerate(unmatched):
        by_tid[-1 - index] = thread  # negative keys: left over, added without a tid
    return by_tid


# -- the kernel's view of a wait ---------------------------------------------------------------

def _kernel_wait(pid: int, thread: ThreadFacts, pids: list[int],
                 fd_index: TreeFds | None) -> TreeFds | None:
    number, args, running = syscall(pid, thread.tid)
    if running or number is None:
        return fd_index
    thread.syscall = number
    thread.syscall_name = syscalls.name(number)
    thread.args = args
    thread.wchan = read_text(f"/proc/{pid}/task/{thread.tid}/wchan").strip()
    if thread.wchan == "0":
        thread.wchan = ""
    meaning = syscalls.meaning(thread.syscall_name, args)
    thread.timed = meaning.timed
    thread.futex = meaning.futex
    thread.child = meaning.child
    if meaning.timeout_at is not None:
        seconds = read_timespec(pid, meaning.timeout_at)
        if seconds is not None:
            if meaning.absolute and meaning.clock is not None:
                try:
                    thread.sleep_left = round(seconds - time.clock_gettime(meaning.clock), 3)
                except OSError:
                    pass
            else:
                thread.sleep_requested = round(seconds, 3)
    fds: list[int] = []
    if meaning.fd is not None and meaning.fd >= 0:
        fds = [meaning.fd]
    elif meaning.fd_list_at:
        fds = read_pollfds(pid, meaning.fd_list_at, meaning.fd_count)
    if fds:
        if fd_index is None:
            fd_index = TreeFds.read(pids)
        endpoints = [resolve(pid, fd, fd_index) for fd in fds[:8]]
        thread.waits_on = endpoints[0]
        thread.waits_on_more = endpoints[1:]
    return fd_index


def _waiting(thread: ThreadFacts) -> bool:
    if thread.tid <= 0:
        return thread.stack is not None
    return thread.syscall is not None or thread.state not in ("R", "")


def _contexts(stack: ThreadStack | None, cwd: str) -> list[FrameContext]:
    if stack is None:
        return []
    found = []
    # The standard library's frames are recognised by module and function by the analysis;
    # parsing them would add nothing but time. A forked child's frames below the fork are
    # its parent's.
    for frame in own_frames(stack.frames):
        if frame.kind != "python" or not frame.file or frame.line is None:
            continue
        if is_stdlib(frame) or frame.file.startswith("<"):
            continue
        path = frame.file if os.path.isabs(frame.file) or not cwd else os.path.join(
            cwd, frame.file)
        found_context = context(path, frame.line, frame.function, shown_file=frame.file)
        if found_context is not None:
            found.append(found_context)
        if len(found) >= _CONTEXT_FRAMES:
            break
    return found


def _pipes_and_sockets(pid: int, index: TreeFds) -> list[Endpoint]:
    endpoints = []
    for fd, target in sorted(index.targets.get(pid, {}).items()):
        if target.startswith("pipe:["):
            endpoints.append(Endpoint(fd=fd, kind="pipe", inode=int(target[6:-1]), text=target))
        elif target.startswith("socket:["):
            endpoints.append(Endpoint(fd=fd, kind="socket", inode=int(target[8:-1]),
                                      text=target))
    return endpoints
