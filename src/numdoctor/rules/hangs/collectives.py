"""torch.distributed: ranks waiting in different collectives, and ranks that never came."""

from __future__ import annotations

from numdoctor.core.waits.frames import short
from numdoctor.core.waits.model import Fate
from numdoctor.findings import Severity
from numdoctor.rules.hangs import phrases
from numdoctor.rules.hangs import waits as W
from numdoctor.rules.hangs.common import cap, root_at
from numdoctor.rules.hangs.diagnosis import Verdict
from numdoctor.rules.hangs.graph import Node, Path, Tree, call_of
from numdoctor.rules.registry import Stage, declare

MISMATCH = declare(
    "HANG009", "Ranks wait in different collectives: they will never match", Severity.ERROR,
    """
    The processes of a `torch.distributed` job (ranks) are all blocked in collective
    operations, but not in the same one: rank 0 waits in `barrier()` while rank 1 waits in
    `all_reduce()`, or they wait in the same operation called from different lines. A
    collective completes only when every rank of the group makes the same call in the same
    order; these never will. The backend's timeout (30 minutes by default for gloo, and for
    NCCL with its watchdog) is the only way out.

    numdoctor reads each rank's Python stack (the `torch/distributed/distributed_c10d.py`
    function it waits in, and the program's line that called it) and the rank from the
    process's environment (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, set by torchrun). The evidence
    lists, per rank, the collective and its call site.

    **Why it matters.** The typical cause is a collective inside a branch that not every rank
    takes (`if rank == 0: dist.barrier()`), an early `return`/`continue` on some ranks, or a
    different number of batches per rank (uneven data), so one rank calls the next
    collective while another still waits in the previous one.

    **Fix.** Make every rank execute the same sequence of collectives: move collectives out of
    rank-dependent branches, give every rank the same number of steps (`drop_last=True`,
    `DistributedSampler` with padding, or `torch.distributed.algorithms.join.Join` for uneven
    inputs). Run with `TORCH_DISTRIBUTED_DEBUG=DETAIL` to make torch check the collectives
    and raise "Detected mismatch between collectives on ranks" instead of hanging, and set a
    shorter `timeout=` in `init_process_group` while debugging.
    """,
    Stage.RUN,
)

MISSING = declare(
    "HANG010", "Ranks wait for a rank that never arrives", Severity.ERROR,
    """
    The ranks of a `torch.distributed` job that are here wait in a collective (or in
    `init_process_group`) for a rank that will not join: it exited (its exit status and time
    are given when its parent recorded them), it is busy or blocked elsewhere in the program,
    or it runs on another machine and numdoctor cannot see it.

    When a rank that the collective needs has exited, the wait can never complete: numdoctor
    reports it as certain. A rank that is alive but elsewhere may still arrive: the evidence
    says what it is doing.

    **Why it matters.** A rank that leaves early (an exception caught and ignored, a `return`
    when its shard of the data is empty, `sys.exit()` on one rank) leaves the others waiting
    until the backend's timeout (30 minutes by default), with nothing printed.

    **Fix.** Make every rank run the same collectives until the end, then call
    `destroy_process_group()` on all of them; do not let one rank skip work or exit early
    (give every rank data, or let it take part with empty tensors). torchrun stops the job
    when a rank *fails*, not when it exits with status 0. Set `timeout=` in
    `init_process_group` to fail sooner while debugging.
    """,
    Stage.RUN,
)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def diagnose(tree: Tree, path: Path) -> Verdict | None:
    ranked = [pid for pid, p in tree.processes.items() if "RANK" in p.job]
    if not ranked:
        return None
    on_path = next((n[0] for n in path.nodes if n[0] in ranked), ranked[0])
    ranks = sorted(tree.ranks(on_path), key=lambda p: _int(tree.processes[p].job.get(
        "RANK")) or 0)
    nodes = {pid: tree.principal(pid) for pid in ranks}
    calls = {pid: call_of(tree, node) if node is not None else None
             for pid, node in nodes.items()}
    waiting = [p for p in ranks if calls[p] is not None]
    elsewhere = [p for p in ranks if calls[p] is None]
    if not waiting:
        return None
    missing, gone = _missing(tree, ranks)
    lines = [_rank_line(tree, pid, nodes[pid]) for pid in ranks[:8]]
    distinct = sorted({c for c in calls.values() if c is not None})
    if not elsewhere and len(distinct) > 1:
        return _mismatch(tree, ranks, nodes, calls, lines, distinct, missing, gone)
    if missing or elsewhere:
        return _missing_verdict(tree, ranks, nodes, calls, lines, missing, gone, elsewhere)
    world = max((_int(tree.processes[p].job.get("WORLD_SIZE")) or 0 for p in ranks),
                default=0)
    if world > len(ranks) and len(distinct) == 1:
        return _remote(tree, ranks, nodes, calls, lines, world)
    return None


def _remote(tree: Tree, ranks: list[int], nodes: dict[int, Node | None],
            calls: dict[int, tuple[str, str] | None], lines: list[str],
            world: int) -> Verdict:
    """Every rank here waits in the same call: the job waits for ranks on other machines."""
    present = {_int(tree.processes[p].job.get("RANK")) for p in ranks}
    others = [str(r) for r in range(world) if r not in present]
    shown = ", ".join(others[:8]) + (", …" if len(others) > 8 else "")
    call = calls[ranks[0]]
    assert call is not None
    waiter = nodes[ranks[0]]
    assert waiter is not None
    here = ", ".join(_rank(tree, p) for p in ranks)
    title = (f"Ranks {here} wait in {call[0]} ({call[1]}) for ranks {shown}, which run "
             "elsewhere (not in this process tree)")
    lines.append(f"WORLD_SIZE is {world}; {len(ranks)} rank(s) run here: look at the logs "
                 "and stacks of the others (numdoctor run on each machine)")
    lines.append(phrases.stack_line(tree, waiter, 6))
    finding = MISSING.finding(
        cap(lines), title=title, where=f"pid {ranks[0]}",
        why="Every rank here reached the same collective; the job waits for ranks on other "
            "machines, which are late, stuck or gone.",
        fix="Look at the other machines' ranks: the one that did not reach this call is the "
            "cause.")
    return Verdict(finding, root_at(tree, waiter), proven=False,
                   summary=title[0].lower() + title[1:])


def _rank(tree: Tree, pid: int) -> str:
    return tree.processes[pid].job.get("RANK", "?")


def _rank_line(tree: Tree, pid: int, node: Node | None) -> str:
    if node is None:
        return f"{phrases.who_process(tree, pid)}: no thread could be read"
    wait = tree.wait(node)
    if wait.kind == W.COLLECTIVE and wait.api is not None:
        return (f"{phrases.who_process(tree, pid)} waits in {short(wait.api.function)}"
                + phrases.at(wait) + _backend(tree, node))
    return f"{phrases.who_process(tree, pid)} {phrases.doing(tree, node)}"


def _backend(tree: Tree, node: Node) -> str:
    names = " ".join(f.function for f in tree.threads[node].frames if f.kind == "native")
    for process in tree.processes.values():
        if process.pid == node[0]:
            names += " " + " ".join(t.name for t in process.threads)
    lowered = names.lower()
    if "nccl" in lowered:
        return " [NCCL]"
    if "gloo" in lowered:
        return " [gloo]"
    return ""


def _missing(tree: Tree, ranks: list[int]) -> tuple[list[int], dict[int, Fate]]:
    """Global ranks of this node that are not alive, and the fates that account for them."""
    jobs = [tree.processes[p].job for p in ranks]
    local_size = next((_int(j.get("LOCAL_WORLD_SIZE")) for j in jobs
                       if j.get("LOCAL_WORLD_SIZE")), None)
    world = next((_int(j.get("WORLD_SIZE")) for j in jobs if j.get("WORLD_SIZE")), None)
    present = {_int(j.get("RANK")) for j in jobs}
    expected: set[int] = set()
    if local_size is not None:
        base = {(_int(j.get("RANK")) or 0) - (_int(j.get("LOCAL_RANK")) or 0) for j in jobs}
        if len(base) == 1:
            start = base.pop()
            expected = set(range(start, start + local_size))
    elif world is not None:
        expected = set(range(world))
    missing = sorted(r for r in expected - present if r is not None)
    parents = {tree.processes[p].ppid for p in ranks}
    siblings = sorted((f for f in tree.gone if f.ppid in parents), key=lambda f: f.pid)
    gone: dict[int, Fate] = {}
    if missing and len(siblings) >= len(missing):
        # Workers are started in local-rank order: the n-th missing rank is the n-th sibling.
        for rank, fate in zip(missing, siblings[-len(missing):], strict=True):
            gone[rank] = fate
    return missing, gone


def _names(calls: dict[int, tuple[str, str] | None], tree: Tree, group: list[int]) -> str:
    pid = group[0]
    call = calls[pid]
    assert call is not None
    ranks = ", ".join(_rank(tree, p) for p in group)
    return f"rank{'s' if len(group) > 1 else ''} {ranks} in {call[0]} ({call[1]})"


def _mismatch(tree: Tree, ranks: list[int], nodes: dict[int, Node | None],
              calls: dict[int, tuple[str, str] | None], lines: list[str],
              distinct: list[tuple[str, str]], missing: list[int],
              gone: dict[int, Fate]) -> Verdict:
    groups = [[p for p in ranks if calls[p] == call] for call in distinct]
    groups.sort(key=lambda g: min(_int(_rank(tree, p)) or 0 for p in g))
    # The odd one out: the smallest group; between equals, the one without rank 0.
    odd = min(reversed(groups), key=len)
    root_pid = odd[-1]
    node = nodes[root_pid]
    assert node is not None
    first = groups[0]
    title = ("Collective mismatch: " + _names(calls, tree, first).replace(" in ", " waits in ", 1)
             + ", " + "; ".join(_names(calls, tree, g) for g in groups[1:]))
    lines.append("every live rank is blocked in a collective, and not in the same one: none "
                 "of them can complete")
    if missing:
        lines.append("missing rank(s): " + ", ".join(str(r) for r in missing))
    lines.append(phrases.stack_line(tree, node, 6))
    finding = MISMATCH.finding(
        cap(lines), title=title, where=f"pid {root_pid}",
        why="A collective completes only when every rank makes the same call; these ranks "
            "wait in different ones and will wait until the backend's timeout.",
        fix="Make every rank run the same collectives in the same order (no collective in a "
            "rank-dependent branch); TORCH_DISTRIBUTED_DEBUG=DETAIL makes torch raise "
            "'Detected mismatch between collectives' instead of hanging.")
    return Verdict(finding, root_at(tree, node), proven=True,
                   summary=title[0].lower() + title[1:])


def _missing_verdict(tree: Tree, ranks: list[int], nodes: dict[int, Node | None],
                     calls: dict[int, tuple[str, str] | None], lines: list[str],
                     missing: list[int], gone: dict[int, Fate],
                     elsewhere: list[int]) -> Verdict:
    waiting = [p for p in ranks if calls[p] is not None]
    call = calls[waiting[0]]
    assert call is not None
    waiter = nodes[waiting[0]]
    assert waiter is not None
    waiters = ", ".join(_rank(tree, p) for p in waiting)
    for rank in missing:
        fate = gone.get(rank)
        lines.append(f"rank {rank} (pid {fate.pid}) {phrases.fate(fate)}" if fate else
                     f"rank {rank} is not in the process tree")
    if elsewhere:
        from numdoctor.rules.hangs.graph import walk

        pid = elsewhere[0]
        start = nodes[pid]
        assert start is not None
        # What keeps the late rank: follow its own wait (a DataLoader worker, a lock...).
        inner = walk(tree, start)
        node = inner.root
        title = (f"Rank {_rank(tree, pid)} never arrived: rank{'s' if len(waiting) > 1 else ''}"
                 f" {waiters} wait{'' if len(waiting) > 1 else 's'} in {call[0]} ({call[1]}),"
                 f" rank {_rank(tree, pid)} {phrases.doing(tree, start)}")
        if node != start:
            lines += phrases.path_lines(tree, inner)
        lines.append(phrases.stack_line(tree, node, 6))
        finding = MISSING.finding(
            cap(lines), title=title, where=f"pid {pid}",
            why="The collective needs every rank; this one is elsewhere and may or may not "
                "come.",
            fix="Make every rank reach the same collectives; look at what this rank does "
                "instead.")
        return Verdict(finding, root_at(tree, node), proven=False,
                       summary=title[0].lower() + title[1:])
    accounted = all(r in gone for r in missing)
    names = ", ".join(str(r) for r in missing)
    plural = "s" if len(missing) > 1 else ""
    if accounted:
        fate = gone[missing[0]]
        what = phrases.fate(fate).split(" (", 1)[0]
        title = (f"Rank{plural} {names} never joined: rank{'s' if len(waiting) > 1 else ''} "
                 f"{waiters} wait{'' if len(waiting) > 1 else 's'} in {call[0]} ({call[1]}) "
                 f"for {'them' if plural else 'it'}; rank {missing[0]} (pid {fate.pid}) {what}")
    else:
        title = (f"Rank{plural} {names} {'are' if plural else 'is'} missing: rank"
                 f"{'s' if len(waiting) > 1 else ''} {waiters} wait in {call[0]} ({call[1]})")
    lines.append(phrases.stack_line(tree, waiter, 6))
    finding = MISSING.finding(
        cap(lines), title=title, where=f"pid {waiting[0]}",
        why=("The collective needs every rank, and a rank it needs has exited: it can never "
             "complete." if accounted else
             "The collective needs every rank; the missing ones are not in this process tree "
             "(another machine, or they exited without numdoctor seeing how)."),
        fix="Do not let a rank exit or skip collectives early; every rank must run the same "
            "collectives, then destroy_process_group().")
    root = root_at(tree, waiter)
    if accounted:
        fate = gone[missing[0]]
        root.pid, root.tid = fate.pid, None
        root.role = f"rank {missing[0]} (pid {fate.pid})"
        root.doing = phrases.fate(fate).split(" (", 1)[0]
    return Verdict(finding, root, proven=accounted, summary=title[0].lower() + title[1:])
