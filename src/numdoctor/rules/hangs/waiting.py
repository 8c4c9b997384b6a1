"""A program that merely waits: it sleeps, waits for input or a server, or for a child. Never
a deadlock, never certain: it may continue."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.hangs import flow, phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import bystanders, cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Path, Tree
from numdoctor.rules.registry import Rule, Stage, declare

SLEEPING = declare(
    "HANG011", "The program sleeps", Severity.ERROR,
    """
    The thread the program waits on is in a sleep (`time.sleep()`, or `nanosleep` in native
    code): it is not deadlocked, it will continue when the sleep ends. The evidence gives the
    line, and how long is left when the kernel says so (Python's `time.sleep` sleeps until a
    deadline numdoctor can read).

    **Why it matters.** A long sleep looks like a hang from outside: no output, no CPU. It
    may be intended (a poll interval, a back-off, a rate limit) or a bug (seconds where
    milliseconds were meant, a retry loop with an ever-growing back-off).

    **Fix.** If the sleep is intended, call `numdoctor.heartbeat()` around it or raise
    `--hang-timeout` above it; otherwise fix the duration at the named line.
    """,
    Stage.RUN,
)

IO = declare(
    "HANG012", "The program waits for input or for a peer (terminal, pipe, socket)",
    Severity.ERROR,
    """
    The thread the program waits on reads from a terminal, a pipe or a socket, or waits for a
    connection, and the other end is outside the program: the user (stdin), another program,
    a server that accepted the connection but does not answer or never accepted it, a
    remote address. numdoctor resolves the file descriptor through the kernel: which process
    holds the other end of a pipe or a Unix socket, the addresses of a TCP connection and
    the local process that listens on them.

    **Why it matters.** It is not a deadlock: the program continues when the other side
    sends something. A read without a timeout on a network connection waits forever when the
    server hangs or the connection silently dies.

    **Fix.** Give network reads a timeout (`socket.settimeout`, `requests.get(...,
    timeout=...)`); redirect stdin from `/dev/null` for unattended runs; look at the server
    named in the evidence.
    """,
    Stage.RUN,
)

CHILD = declare(
    "HANG013", "The program waits for a child process", Severity.ERROR,
    """
    The thread the program waits on waits for a child process to end (`subprocess.run`,
    `Popen.wait/communicate`, `os.waitpid`, `Process.join`), and the child is still running:
    the evidence says what the child is doing (sleeping, waiting for input, blocked, busy),
    following it further down when it waits for something itself.

    **Why it matters.** The parent's stack only shows `waitpid`; the reason is in the child.

    **Fix.** Look at the child's line; give `subprocess.run(..., timeout=...)` /
    `Process.join(timeout)` a timeout so a stuck child becomes an error.
    """,
    Stage.RUN,
)


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    root = path.root
    wait = tree.wait(root)
    index = flow.consumer_edge(path, frozenset({W.CHILD}))
    if index is not None and path.nodes[index][0] != root[0]:
        return _child(tree, path, index)
    if wait.kind == W.SLEEP:
        return _verdict(SLEEPING, tree, path, f"{_cap(phrases.who(tree, root))} sleeps"
                        + (f" at {phrases.basename_line(wait)}" if wait.site else "")
                        + _sleep_detail(tree, path))
    if wait.kind in (W.IO, W.ACCEPT, W.CONNECTION) and tree.threads[root].waits_on is not None:
        return _verdict(IO, tree, path, f"{_cap(phrases.who(tree, root))} "
                        f"{phrases.doing(tree, root)}")
    if wait.kind == W.CHILD:
        return _verdict(CHILD, tree, path, f"{_cap(phrases.who(tree, root))} "
                        f"{phrases.doing(tree, root)}")
    return None


def _child(tree: Tree, path: Path, index: int) -> Verdict:
    parent = path.nodes[index]
    root = path.root
    child = tree.processes[root[0]]
    command = f" (`{child.command[:80]}`)" if child.command else ""
    title = (f"{_cap(phrases.who(tree, parent))} waits for child pid {root[0]}{command}"
             + (f" at {phrases.basename_line(tree.wait(parent))}" if tree.wait(parent).site
                else "")
             + f"; it {_it(phrases.doing(tree, root))}")
    return _verdict(CHILD, tree, path, title)


def _it(doing: str) -> str:
    return doing


def _sleep_detail(tree: Tree, path: Path) -> str:
    thread = tree.threads[path.root]
    parts = []
    wait = tree.wait(path.root)
    if wait.context is not None and wait.context.text:
        parts.append(f"`{wait.context.text}`")
    times = phrases.sleep_times(thread).strip(" ()")
    if times:
        parts.append(times)
    idle = tree.facts.idle_for
    if idle is not None:
        parts.append(f"idle for {phrases.seconds(idle)} so far")
    return f" ({'; '.join(parts)})" if parts else ""


def _verdict(rule: Rule, tree: Tree, path: Path, title: str) -> Verdict:
    root = path.root
    lines = phrases.path_lines(tree, path)
    lines.append(phrases.stack_line(tree, root))
    lines += bystanders(tree, set(path.nodes))
    finding = rule.finding(
        cap(lines), title=title, where=f"pid {root[0]}",
        why="The program is waiting, not deadlocked: it continues when the wait ends.")
    return Verdict(finding, root_at(tree, root), proven=False,
                   summary=title[0].lower() + title[1:])


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
