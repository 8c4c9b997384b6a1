"""Names for processes and threads as a user knows them: "DataLoader worker 1 (pid 812)",
"rank 1 (pid 77)", "thread Thread-2 (worker) of the main process (pid 9)"."""

from __future__ import annotations

import shlex

from numdoctor.core.waits.model import ProcessFacts, ThreadFacts, TreeFacts
from numdoctor.rules.hangs.waits import SUPERVISOR, Wait

_ROLE_NAMES = {
    "dataloader-worker": "DataLoader worker",
    "pool-worker": "multiprocessing.Pool worker",
    "executor-worker": "ProcessPoolExecutor worker",
}


def _command(process: ProcessFacts) -> str:
    try:
        words = shlex.split(process.command)
    except ValueError:
        words = process.command.split()
    if not words:
        return ""
    shown = " ".join(words[:3])
    return shown if len(shown) <= 60 else shown[:57] + "…"


class Roles:
    def __init__(self, facts: TreeFacts, waits: dict[tuple[int, int], Wait]) -> None:
        self.facts = facts
        self.single = len(facts.processes) <= 1
        self.names: dict[int, str] = {}
        self.waits = waits
        main_waits = {p.pid: waits.get((p.pid, p.pid)) for p in facts.processes}
        roles = {pid: (w.role if w is not None else "") for pid, w in main_waits.items()}
        # Workers of one pool are numbered in the order they started, as frameworks do.
        siblings: dict[tuple[int, str], list[ProcessFacts]] = {}
        for process in facts.processes:
            if roles.get(process.pid) == "dataloader-worker":
                siblings.setdefault((process.ppid, "dataloader-worker"), []).append(process)
        index: dict[int, int] = {}
        for group in siblings.values():
            group.sort(key=lambda p: (p.started if p.started is not None else 0.0, p.pid))
            for number, process in enumerate(group):
                index[process.pid] = number
        for process in facts.processes:
            wait = main_waits.get(process.pid)
            self.names[process.pid] = self._name(process, roles.get(process.pid, ""),
                                                 index.get(process.pid), wait)

    def _name(self, process: ProcessFacts, role: str, number: int | None,
              wait: Wait | None) -> str:
        rank = process.job.get("RANK")
        if rank is not None:
            return f"rank {rank}"
        if role == "dataloader-worker":
            return f"DataLoader worker {number}" if number is not None else "DataLoader worker"
        if role in _ROLE_NAMES:
            return _ROLE_NAMES[role]
        if role == "mp-process":
            task = wait.task if wait is not None else None
            return "multiprocessing.Process" + (
                f" running {task.function.split('.<locals>', 1)[0]}" if task is not None
                else "")
        if wait is not None and wait.kind == SUPERVISOR:
            return "torchrun agent"
        if "multiprocessing.resource_tracker" in process.command:
            return "multiprocessing resource tracker"
        if process.pid == self.facts.main_pid:
            return "the main process"
        if process.forked_from is not None:
            return f"forked child of pid {process.forked_from}"
        command = _command(process)
        return f"child process `{command}`" if command else f"child of pid {process.ppid}"

    def process(self, pid: int) -> str:
        name = self.names.get(pid, f"process {pid}")
        return f"{name} (pid {pid})"

    def thread(self, pid: int, tid: int) -> str:
        process = self.facts.process(pid)
        wait = self.waits.get((pid, tid))
        if tid == pid or (process is not None and _is_main(process, tid)):
            if self.single:
                return f"the main thread (pid {pid})"
            return f"the main thread of {self.process(pid)}"
        name = _thread_name(process, tid)
        owner = f" (pid {pid})" if self.single else f" of {self.process(pid)}"
        if wait is not None and wait.role == "tf-pipeline":
            return f"the tf.data pipeline thread {tid}{owner}"
        return f"thread {name}{owner}" if name else f"thread {tid}{owner}"


def _is_main(process: ProcessFacts, tid: int) -> bool:
    if tid > 0:
        return False
    thread = next((t for t in process.threads if t.tid == tid), None)
    return thread is not None and thread.stack is not None and thread.stack.name == "MainThread"


def _thread_name(process: ProcessFacts | None, tid: int) -> str:
    if process is None:
        return ""
    thread: ThreadFacts | None = next((t for t in process.threads if t.tid == tid), None)
    if thread is None:
        return ""
    name = thread.stack.name if thread.stack is not None and thread.stack.name else thread.name
    # A thread that never got a name of its own shows the program's name (comm).
    inherited = {t.name for t in process.threads if t.tid == process.pid} | {"python"}
    if not name or (name in inherited and thread.tid != process.pid):
        return ""
    return f"'{name}'"
