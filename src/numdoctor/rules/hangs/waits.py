"""What one thread waits for, read from its frames, the kernel's view and its source.

Frames are recognised by module path and function name (`short()` of py-spy's qualified
names, so pystack's and faulthandler's plain names match too), never by a line number, so a
library update that moves code keeps working. The highest-level API found between the
innermost frame and the program's own frame decides: a DataLoader iteration is a DataLoader
wait even though, underneath, it is a queue get on a pipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from numdoctor.core.stacks.model import Frame
from numdoctor.core.waits.frames import (
    is_module,
    is_user,
    native_name,
    own_frames,
    python_frames,
    short,
)
from numdoctor.core.waits.model import FrameContext, LockSite, ProcessFacts, ThreadFacts

BUSY_CPU = 0.5  # a thread using more of a CPU than this over the window is working
IDLE_CPU = 0.1

# Kinds of wait. Each names what would release the thread.
LOCK = "lock"  # a threading Lock/RLock/Condition taken as a lock: its holder
MP_LOCK = "mp-lock"  # a multiprocessing Lock/RLock/Semaphore: its holder, any process
NOTIFY = "notify"  # Event/Condition/Barrier/Semaphore wait: another thread's action
QUEUE = "queue"  # queue.Queue/SimpleQueue get: another thread's put
JOIN = "join"  # Thread.join: that thread's end
FUTURE = "future"  # concurrent.futures: the worker running the task
POOL = "pool"  # multiprocessing.Pool result: the worker processes
DATALOADER = "dataloader"  # torch DataLoader iteration: its worker processes
TFDATA = "tfdata"  # tf.data iteration: the pipeline's threads
COLLECTIVE = "collective"  # torch.distributed: the other ranks
CHILD = "child"  # waitpid/subprocess: a child process
CONNECTION = "connection"  # multiprocessing Queue/Pipe/Connection: the other end's holder
IO = "io"  # read/recv/poll on an fd: the other end (a process, a terminal, a server)
ACCEPT = "accept"  # a server waiting for clients
SLEEP = "sleep"
OPENMP_FORK = "openmp-fork"  # a forked child in libgomp, waiting for threads it lacks
SUPERVISOR = "supervisor"  # a launcher (torchrun's agent) watching its workers
BUSY = "busy"
BLOCKED = "blocked"  # blocked in something not recognised
GONE = "gone"  # no stack and no kernel view


@dataclass
class Wait:
    pid: int
    tid: int
    kind: str
    site: Frame | None = None  # the program's own frame where it waits
    context: FrameContext | None = None  # the source around `site`
    api: Frame | None = None  # the library function the program called there
    detail: str = ""  # "Event.wait", "queue.Queue.get", "clock_nanosleep"
    obj: str = ""  # the awaited object as written: "source", "self.remote_ready"
    lock: LockSite | None = None  # kind LOCK/MP_LOCK: the lock being taken
    timed: bool | None = None  # the kernel wait has a timeout
    helper: bool = False  # a framework's own thread, idle: never the one to blame
    role: str = ""  # what the frames say the process is: "dataloader-worker", ...
    task: Frame | None = None  # a worker running a task: the task's own innermost frame
    notes: list[str] = field(default_factory=list)

    @property
    def node(self) -> tuple[int, int]:
        return (self.pid, self.tid)


# Library frames that say what the program called, highest level first.
_APIS: tuple[tuple[str, tuple[str, ...], frozenset[str] | None], ...] = (
    (DATALOADER, ("torch/utils/data/dataloader.py",),
     frozenset({"__next__", "_next_data", "_get_data", "_try_get_data"})),
    (TFDATA, ("tensorflow/python/data/ops/iterator_ops.py",
              "tensorflow/python/data/ops/optional_ops.py"),
     frozenset({"__next__", "_next_internal", "get_next", "next", "get_next_as_optional"})),
    (COLLECTIVE, ("torch/distributed/distributed_c10d.py",), None),
    (SUPERVISOR, ("torch/distributed/elastic/agent/server/api.py",),
     frozenset({"_invoke_run", "run", "_monitor_workers"})),
    (POOL, ("stdlib:multiprocessing/pool.py",),
     frozenset({"get", "wait", "map", "starmap", "next", "__next__", "apply", "imap",
                "close", "join"})),
    (FUTURE, ("stdlib:concurrent/futures/_base.py",),
     frozenset({"result", "exception", "wait", "as_completed", "_result_or_cancel",
                "result_iterator"})),
    (FUTURE, ("stdlib:concurrent/futures/process.py",),
     frozenset({"_chain_from_iterable_of_lists"})),
    (CHILD, ("stdlib:subprocess.py",),
     frozenset({"wait", "_wait", "_try_wait", "communicate", "_communicate", "run", "call",
                "check_call", "check_output"})),
    (CHILD, ("stdlib:multiprocessing/popen_fork.py", "stdlib:multiprocessing/process.py",
             "stdlib:multiprocessing/popen_spawn_posix.py"),
     frozenset({"wait", "poll", "join"})),
    (CONNECTION, ("stdlib:multiprocessing/queues.py",), frozenset({"get"})),
    (CONNECTION, ("stdlib:multiprocessing/connection.py",),
     frozenset({"recv", "recv_bytes", "recv_bytes_into", "_recv", "_recv_bytes", "poll",
                "_poll", "wait"})),
    (JOIN, ("stdlib:threading.py",), frozenset({"join", "_wait_for_tstate_lock"})),
    (QUEUE, ("stdlib:queue.py",), frozenset({"get", "put", "join"})),
    (MP_LOCK, ("stdlib:multiprocessing/synchronize.py",), frozenset({"__enter__", "acquire"})),
    (NOTIFY, ("stdlib:multiprocessing/synchronize.py",), frozenset({"wait", "wait_for"})),
    (LOCK, ("stdlib:threading.py",), frozenset({"__enter__", "acquire"})),
    (NOTIFY, ("stdlib:threading.py",), frozenset({"wait", "wait_for", "_wait"})),
    (IO, ("stdlib:selectors.py", "stdlib:socket.py", "stdlib:ssl.py", "stdlib:select.py",
          "stdlib:http/client.py", "stdlib:socketserver.py"), None),
)

# What a process's outermost frames say it is, and the call at which it waits for work.
_ROLES: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...] = (
    ("dataloader-worker", ("torch/utils/data/_utils/worker.py",), frozenset({"_worker_loop"})),
    ("pool-worker", ("stdlib:multiprocessing/pool.py",), frozenset({"worker"})),
    ("executor-worker", ("stdlib:concurrent/futures/process.py",),
     frozenset({"_process_worker"})),
    ("thread-worker", ("stdlib:concurrent/futures/thread.py",), frozenset({"_worker"})),
    ("tf-pipeline", ("tensorflow/python/data/ops/from_generator_op.py",),
     frozenset({"generator_py_func", "get_next_id", "finalize_py_func",
                "get_iterator_id_fn", "generator_next_fn"})),
    ("mp-process", ("stdlib:multiprocessing/process.py",), frozenset({"_bootstrap"})),
    ("tf-pipeline", ("tensorflow/python/ops/script_ops.py",),
     frozenset({"__call__", "_call", "eager_py_func", "_internal_py_func", "numpy_function",
                "py_func", "wrapper"})),
)
# Threads a framework runs for itself; idle unless they work at full CPU.
_HELPERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("stdlib:multiprocessing/queues.py", frozenset({"_feed"})),
    ("stdlib:multiprocessing/pool.py",
     frozenset({"_handle_workers", "_handle_tasks", "_handle_results"})),
    ("stdlib:multiprocessing/resource_tracker.py", frozenset({"main"})),
    ("stdlib:multiprocessing/resource_sharer.py", frozenset({"_serve"})),
    ("stdlib:multiprocessing/forkserver.py", frozenset({"main"})),
    ("stdlib:concurrent/futures/process.py",
     frozenset({"run", "wait_result_broken_or_wakeup"})),
    ("torch/utils/data/_utils/pin_memory.py", frozenset({"_pin_memory_loop", "do_one_step"})),
    ("torch/distributed/elastic/utils/logging.py", frozenset()),
    ("torch/distributed/elastic/timer/api.py", frozenset()),
    ("torch/distributed/elastic/agent/server/api.py", frozenset({"_run", "_invoke_run"})),
    ("torch/distributed/elastic/multiprocessing/tail_log.py", frozenset()),
    ("torch/distributed/elastic/rendezvous/utils.py", frozenset({"_run"})),
)
# A worker whose role frame calls one of these is waiting for work, not working.
_WORK_QUEUES = ("stdlib:multiprocessing/queues.py", "stdlib:multiprocessing/connection.py",
                "stdlib:multiprocessing/synchronize.py", "stdlib:queue.py",
                "stdlib:selectors.py", "stdlib:threading.py")
_SLEEP_NATIVE = ("nanosleep", "clock_nanosleep", "usleep", "sleep")


def matches(frame: Frame, modules: tuple[str, ...], functions: frozenset[str] | None) -> bool:
    if not is_module(frame, *modules):
        return False
    return functions is None or not functions or short(frame.function) in functions


def is_helper_frame(frame: Frame) -> bool:
    return any(matches(frame, (module,), functions) for module, functions in _HELPERS)


def role_of(frames: list[Frame]) -> tuple[str, int | None]:
    """(role, index of the role frame in `frames`) from a process's own frames."""
    for index, frame in enumerate(frames):
        for role, modules, functions in _ROLES:
            if matches(frame, modules, functions):
                return role, index
    return "", None


def context_for(thread: ThreadFacts, frame: Frame | None) -> FrameContext | None:
    if frame is None:
        return None
    for context in thread.contexts:
        if context.line == frame.line and context.function == frame.function and \
                (context.file == frame.file or context.file.endswith(frame.file)):
            return context
    return None


def in_gnu_openmp(frames: list[Frame]) -> Frame | None:
    """The libgomp frame a thread waits in, when libgomp is among its innermost libraries."""
    from numdoctor.snapshot.libraries import classify

    libraries: list[str] = []
    for frame in frames:
        if frame.kind == "python":
            break
        if frame.kind != "native" or not frame.file:
            continue
        if frame.file not in libraries:
            libraries.append(frame.file)
        if classify(frame.file) == ("openmp", "gnu") and len(libraries) <= 3:
            return frame
    return None


def is_busy(thread: ThreadFacts) -> bool:
    """Working, not waiting: it used most of a CPU over the window, or it is on a CPU (or
    queued for one) now and used some — a busy thread on a crowded machine gets little CPU,
    but it is never blocked in a system call."""
    running = thread.state == "R" and thread.syscall is None
    if thread.cpu is None:
        return running
    return thread.cpu >= BUSY_CPU or (running and thread.cpu >= 0.05)


def classify(process: ProcessFacts, thread: ThreadFacts) -> Wait:
    """What `thread` of `process` waits for."""
    frames = own_frames(thread.frames)
    python = python_frames(frames)
    wait = Wait(process.pid, thread.tid, BLOCKED, timed=thread.timed)
    role, role_index = role_of(frames)
    wait.role = role
    user_index = next((i for i, f in enumerate(python) if is_user(f)), None)
    library = python[:user_index] if user_index is not None else python
    if user_index is not None:
        wait.site = python[user_index]
        wait.context = context_for(thread, wait.site)
    # A worker: is it running a task (then the task's own frame is the place to look) or
    # waiting for one?
    if role:
        assert role_index is not None
        inside = [f for f in frames[:role_index] if f.kind == "python"]
        task = next((f for f in inside if is_user(f)), None)
        wait.task = task
        if task is None and role != "tf-pipeline" and all(
                is_module(f, *_WORK_QUEUES) for f in inside):
            wait.helper = not is_busy(thread)
    if is_busy(thread):
        wait.kind = BUSY
        wait.detail = f"{thread.cpu:.0%} CPU" if thread.cpu is not None else "running"
        return wait
    if not frames and thread.syscall is None and not thread.state:
        wait.kind = GONE
        return wait
    if process.forked_from is not None:
        gomp = in_gnu_openmp(frames)
        if gomp is not None:
            wait.kind = OPENMP_FORK
            wait.detail = gomp.function or gomp.file
            return wait
    api = _api(library)
    if api is not None:
        wait.kind, wait.api = api
        wait.detail = _qualified(wait.api)
    if wait.kind == SUPERVISOR:
        return wait
    if user_index is None and any(is_helper_frame(f) for f in python):
        wait.helper = True
    _from_kernel(thread, wait, frames)
    if wait.kind == SLEEP and thread.sleep_left is not None and thread.sleep_left < 1.0 and \
            (thread.cpu or 0.0) >= 0.2:
        # Short sleeps between bursts of work: a loop that works (slowly), not a wait.
        wait.kind = BUSY
        wait.detail = "working between short sleeps"
        return wait
    _lock_site(wait)
    _object(wait)
    if not python and thread.tid != process.pid:
        # A thread that never ran Python (a BLAS or OpenMP pool, a runtime's event loop):
        # the library's business, not the program's.
        wait.helper = True
    return wait


def _api(library: list[Frame]) -> tuple[str, Frame] | None:
    """The highest-level recognised API among the library frames (innermost first)."""
    for kind, modules, functions in _APIS:
        found = [f for f in library if matches(f, modules, functions)]
        if found:
            return kind, found[-1]  # the outermost: the call the program made
    return None


def _qualified(frame: Frame) -> str:
    """'Event.wait' (py-spy's qualified name); '' when the tool gave a bare name, which
    cannot tell `Event.wait` from `Condition.wait`."""
    name = frame.function.split(".<locals>", 1)[0]
    return name if "." in name else ""


def _from_kernel(thread: ThreadFacts, wait: Wait, frames: list[Frame]) -> None:
    call = thread.syscall_name
    natives = [native_name(f).lstrip("_").replace("GI___", "") for f in frames[:4]
               if f.kind == "native"]
    if call in ("clock_nanosleep", "nanosleep") or (
            call == "restart_syscall" and any(n in _SLEEP_NATIVE for n in natives)) or (
            not call and natives and natives[0] in _SLEEP_NATIVE):
        if wait.kind == BLOCKED:
            wait.kind = SLEEP
            wait.detail = call or "sleep"
        return
    if call in ("wait4", "waitid"):
        if wait.kind in (BLOCKED,):
            wait.kind = CHILD
            wait.detail = call
        return
    if call in ("accept", "accept4") and wait.kind in (BLOCKED, IO):
        wait.kind = ACCEPT
        return
    if thread.waits_on is not None and wait.kind in (BLOCKED,):
        kind = thread.waits_on.kind
        wait.kind = IO if kind != "epoll" else BLOCKED
        wait.detail = call
        return
    if call == "futex" and wait.kind == BLOCKED and wait.context is not None and \
            wait.context.acquiring is not None:
        wait.kind = LOCK
        wait.detail = "lock acquire"
    if wait.kind == BLOCKED and not call and wait.context is not None:
        # No kernel view (faulthandler stacks only): the source says what the line does.
        if wait.context.acquiring is not None:
            wait.kind = LOCK
        elif any(c.rsplit(".", 1)[-1] == "sleep" for c in wait.context.calls):
            wait.kind = SLEEP
            wait.detail = "time.sleep"


def _lock_site(wait: Wait) -> None:
    if wait.kind in (LOCK, MP_LOCK) and wait.context is not None:
        wait.lock = wait.context.acquiring
        if wait.lock is None and wait.api is not None:
            # `lock.acquire()` as written: the call on the line names the lock.
            for callee in wait.context.calls:
                if callee.endswith((".acquire", ".__enter__")):
                    wait.lock = LockSite(callee.rsplit(".", 1)[0], wait.context.file,
                                         wait.context.line, wait.context.function,
                                         untimed=None, kind="acquire")
                    break


def _object(wait: Wait) -> None:
    """The awaited object as the program wrote it: the callee of the line's call whose name is
    the API's function (`self.remote_ready` for `self.remote_ready.wait()`)."""
    if wait.context is None:
        return
    if wait.lock is not None:
        wait.obj = wait.lock.expression
        return
    wanted = {short(wait.api.function)} if wait.api is not None else set()
    wanted |= {"get", "wait", "result", "recv", "recv_bytes", "join", "acquire", "map",
               "readline", "read", "recv_into", "communicate", "barrier"}
    for callee in reversed(wait.context.calls):
        head, _, name = callee.rpartition(".")
        if head and name in wanted:
            wait.obj = head
            return
