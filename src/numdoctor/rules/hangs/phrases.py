"""How the analysis says what a thread is doing, the same way in every finding."""

from __future__ import annotations

import os

from numdoctor.core.waits.frames import chain, label, own_frames, where
from numdoctor.core.waits.model import Endpoint, Fate, ThreadFacts
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.graph import Edge, Node, Path, Tree

_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
            8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value < 1:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def at(wait: W.Wait) -> str:
    """' at file.py:12: `line`' for the program's frame, or ''."""
    if wait.site is None:
        return ""
    text = wait.context.text if wait.context is not None else ""
    return f" at {where(wait.site)}" + (f": `{text}`" if text else "")


def endpoint_detail(end: Endpoint) -> str:
    """'pipe:[123] (read end); other end: held by pid 9 (bash) (outside the tree)'."""
    if end.kind == "tty":
        return f"the terminal {end.text}"
    other = ""
    if end.peer_gone:
        other = "; its other end is closed"
    elif end.peer_outside:
        other = f"; other end: {end.peer_outside}"
    return f"{end.text}{other}"


def fate(dead: Fate) -> str:
    """'was killed by SIGKILL at 0.1 s (reaped by its parent pid 12)'."""
    if dead.oom_killed:
        how = "was killed by the kernel's OOM killer (SIGKILL)"
    elif dead.signal is not None:
        how = f"was killed by {_SIGNALS.get(dead.signal, f'signal {dead.signal}')}"
    elif dead.exit_code is not None:
        how = f"exited with status {dead.exit_code}"
    else:
        how = "vanished (how it ended is not known)"
    when = f" {seconds(dead.ended)} after the start" if dead.ended is not None else ""
    source = f" ({dead.source})" if dead.source and dead.source != "vanished" else ""
    return how + when + source


def doing(tree: Tree, node: Node) -> str:
    """What the thread at `node` does, as a phrase after its name."""
    wait = tree.wait(node)
    thread = tree.threads[node]
    where_ = at(wait)
    kind = wait.kind
    if kind == W.BUSY:
        cpu = f"{thread.cpu:.0%} CPU" if thread.cpu is not None else "running"
        if wait.site is None:
            native = next((f for f in thread.frames if f.kind == "native" and f.file), None)
            return f"is busy ({cpu}) in {label(native)}" if native else f"is busy ({cpu})"
        return f"is busy ({cpu}){where_}"
    if kind == W.SLEEP:
        return "sleeps" + where_ + sleep_times(thread)
    if kind in (W.LOCK, W.MP_LOCK):
        what = "multiprocessing lock" if kind == W.MP_LOCK else "lock"
        name = f" `{wait.lock.expression}`" if wait.lock is not None else ""
        return f"waits to take the {what}{name}{where_}{timeout(thread)}"
    if kind == W.OPENMP_FORK:
        return f"waits in GNU OpenMP (libgomp){where_}"
    if kind == W.CHILD:
        child = thread.child
        whom = f"child pid {child}" if child and child > 0 else "a child process"
        return f"waits for {whom}{where_}"
    if kind in (W.IO, W.CONNECTION, W.ACCEPT) and thread.waits_on is not None:
        verb = "waits for a connection on" if kind == W.ACCEPT else "waits to read"
        if thread.syscall_name in ("write", "sendto", "sendmsg"):
            verb = "waits to write to"
        end = thread.waits_on
        name = "stdin" if end.fd == 0 else f"fd {end.fd}"
        return f"{verb} {name}{where_} ({endpoint_detail(end)})"
    api = f" in {wait.detail}" if wait.detail and "." in wait.detail else ""
    if kind == W.BLOCKED and not api and thread.syscall_name:
        api = f" in the system call {thread.syscall_name}"
    if kind == W.GONE:
        return "has no stack and no kernel state (it may have just exited)"
    return f"waits{api}{where_}{timeout(thread)}"


def timeout(thread: ThreadFacts) -> str:
    if thread.timed is False:
        return " (no timeout)"
    return ""


def sleep_times(thread: ThreadFacts) -> str:
    parts = []
    if thread.sleep_left is not None:
        parts.append(f"{seconds(max(thread.sleep_left, 0.0))} left")
    elif thread.sleep_requested is not None:
        parts.append(f"for {seconds(thread.sleep_requested)} in all")
    return f" ({', '.join(parts)})" if parts else ""


def who(tree: Tree, node: Node) -> str:
    return tree.roles.thread(*node)


def who_process(tree: Tree, pid: int) -> str:
    return tree.roles.process(pid)


def step(tree: Tree, edge: Edge) -> str:
    """One line of a who-waits-for-whom chain."""
    if edge.fate is not None:
        dead = edge.fate
        return f"→ pid {dead.pid} {fate(dead)}"
    assert edge.target is not None
    why = f" ({edge.why})" if edge.why and edge.kind in (W.LOCK, W.MP_LOCK) else ""
    return f"→ {who(tree, edge.target)}{why} {doing(tree, edge.target)}"


def path_lines(tree: Tree, path: Path, limit: int = 6) -> list[str]:
    lines = [f"{who(tree, path.nodes[0])} {doing(tree, path.nodes[0])}"]
    for edge in path.edges[:limit]:
        lines.append(step(tree, edge))
    if path.cycle and path.cycle_edge is not None:
        target = path.cycle_edge.target
        assert target is not None
        why = f" ({path.cycle_edge.why})" if path.cycle_edge.why else ""
        lines.append(f"→ back to {who(tree, target)}{why}: they wait for each other")
    return lines


def stack_line(tree: Tree, node: Node, limit: int = 8) -> str:
    thread = tree.threads[node]
    frames = own_frames(thread.frames)
    if not frames:
        return f"{who(tree, node)}: no stack"
    source = thread.stack.source if thread.stack is not None else ""
    return f"stack of {who(tree, node)}" + (f" ({source})" if source else "") + \
        f": {chain(frames, limit)}"


def file_line(wait: W.Wait) -> str:
    """'/path/to/file.py:12' for the report: where to look."""
    if wait.site is None:
        return ""
    return f"{wait.site.file}:{wait.site.line}"


def basename_line(wait: W.Wait) -> str:
    return where(wait.site) if wait.site is not None else ""


def short_file(path: str) -> str:
    return os.path.basename(path)
