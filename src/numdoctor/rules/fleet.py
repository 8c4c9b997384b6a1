"""Codes that `numdoctor fleet` emits about a Dask cluster as a whole (numdoctor.fleet)."""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from typing import TYPE_CHECKING

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import VENDOR_NAMES
from numdoctor.rules.registry import Stage, declare
from numdoctor.snapshot.environment import THREAD_LIMIT_VARS

# Every module of this package is imported by `numdoctor check` (the registry finds the
# snapshot checks by walking it): the fleet runner (concurrent.futures, logging, socket) and
# the comparison load only where a fleet command uses them.
if TYPE_CHECKING:
    from numdoctor.fleet.collect import FleetFacts, MemberFacts
    from numdoctor.fleet.diff import Difference
    from numdoctor.fleet.probe_model import FleetProbe, Share

_MAX_EVIDENCE = 25
_LIST_INLINE = 6  # more workers than this are summarised in `where`

FLT001 = declare(
    "FLT001", "Workers differ from the majority of the cluster", Severity.WARNING,
    """
    Some workers (or the client, or the scheduler) differ from what most workers of the
    cluster have: installed package versions, the Python version, the BLAS/OpenMP libraries
    they have loaded, thread settings (`OMP_NUM_THREADS` and friends, pool sizes, Dask
    threads), other environment variables that steer the numerical stack, CPU flags or the
    number of CPUs they may use. The evidence names each difference, the majority's value and
    how many workers hold it; `where` names the workers that differ.

    **Why it matters.** A task gives different results, speed or failures depending on which
    worker runs it: one node with another BLAS returns results that differ in the last bits,
    a container image with a stale wheel raises where the others do not, a thread limit set on
    half the workers makes those run 2–10x slower (or oversubscribe), a worker without AVX-512
    dies with "Illegal instruction" on a binary built for the others. Packages that differ
    between the client and the workers break unpickling of tasks and results. Dask's own
    version check compares a handful of packages and only warns.

    CPU model and CPU count differences are reported as information: mixed hardware is
    common and harmless as long as the thread settings follow it.

    **Fix.** Start every worker from the same image or environment (same lock file or
    container tag), set thread variables in one place (Dask's
    `distributed.nanny.pre-spawn-environ` configuration, or the job script that starts all
    workers) and restart the odd workers. With mixed hardware, build binaries for the oldest
    CPU or pin tasks that need newer instructions with worker resources.
    """,
    Stage.FLEET,
)

FLT002 = declare(
    "FLT002", "A cluster member did not finish collecting within the timeout", Severity.ERROR,
    """
    A worker (or the scheduler) did not return its facts within `--timeout`. Two cases are
    told apart in the evidence:

    - **The member answered, but its collection was stuck**: its event loop was alive and it
      sent the Python stack of the thread that was collecting. The innermost frames name
      the call that blocked (often a query into a BLAS/OpenMP runtime, or an import with
      `--import`). That thread stays blocked in the worker.
    - **The member did not answer at all**: the whole process is frozen, typically in C code
      that holds the GIL (a deadlocked runtime, a fork()ed worker stuck in an OpenMP
      barrier), or the network to it is down. Dask will remove it only after
      `distributed.scheduler.worker-ttl` (5 minutes by default); tasks sent to it meanwhile
      wait.

    numdoctor never kills workers of your cluster; the rest of the report covers the members
    that answered.

    **Fix.** Look at the worker with `py-spy dump --native --pid PID` on its host (the pid is
    in the JSON report when known), restart it (`client.restart_workers([address])`), and run
    `numdoctor check` on that host to see why the stack hangs.
    """,
    Stage.FLEET,
)

FLT003 = declare(
    "FLT003", "A worker was lost during collection", Severity.ERROR,
    """
    The connection to a worker broke while numdoctor was collecting on it: the worker process
    died (killed, out of memory, crashed in native code) or left the cluster. A worker that
    dies while doing nothing but answering a diagnostic call usually dies under real tasks
    too.

    **Fix.** Read the worker's log (and its nanny's, which reports the exit status or the
    signal); check the host's kernel log for the OOM killer (`dmesg | grep -i oom`). Run
    `numdoctor check` on that host, or `numdoctor run` on the worker command, to find out why
    it dies.
    """,
    Stage.FLEET,
)

FLT004 = declare(
    "FLT004", "Collecting failed on a cluster member", Severity.ERROR,
    """
    A worker, the scheduler or the client answered with an error instead of its facts. Most
    often numdoctor is not installed in the worker's environment (`No module named
    'numdoctor'`), or a different numdoctor version there writes a snapshot this one cannot
    read. The evidence holds the error and its traceback.

    **Fix.** Install the same numdoctor version in every environment of the cluster (it is
    small and has no compiled parts), e.g. in the worker image, or with the Dask
    `PipInstall` worker plugin for a running cluster.
    """,
    Stage.FLEET,
)

FLT005 = declare(
    "FLT005", "Dask threads times thread-pool sizes exceed a host's CPUs", Severity.WARNING,
    """
    On one host, the Dask worker threads multiplied by the size of the BLAS/OpenMP pool each
    of them may start add up to more than the CPUs available there. Every Dask thread that
    runs a NumPy/SciPy/PyTorch call can start a whole pool, so 4 workers × 2 threads × a pool
    of 8 ask for 64 threads on an 8-CPU host.

    **Why it matters.** Oversubscription makes compute-bound tasks slower, not faster
    (time-slicing, cache thrashing, CFS throttling under a container quota), and can make
    OpenBLAS fail with "pthread_create failed". Dask's nanny sets `OMP_NUM_THREADS=1` by
    default (`distributed.nanny.pre-spawn-environ`) for exactly this reason; workers started
    without a nanny, or configurations that override it, lose that protection.

    **Fix.** Keep `workers × threads per worker × pool size ≤ CPUs` on each host: set
    `OMP_NUM_THREADS` (and `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`) through
    `distributed.nanny.pre-spawn-environ` or the worker's environment, or start fewer
    workers or threads (`--nworkers`, `--nthreads`).
    """,
    Stage.FLEET,
)

FLT006 = declare(
    "FLT006", "The cluster has no workers", Severity.WARNING,
    """
    The scheduler listed no worker when numdoctor asked, so only the scheduler and the client
    were examined and nothing could be compared.

    **Fix.** Wait until the workers have connected (`client.wait_for_workers(n)`) and run
    `numdoctor fleet` again; check the workers' logs if they never connect.
    """,
    Stage.FLEET,
)


def failure_finding(member: MemberFacts, facts: FleetFacts) -> Finding:
    from numdoctor.fleet import runner

    evidence = [member.error] if member.error else []
    if member.machine:
        evidence.append(f"host {member.machine}" + (f", pid {member.pid}" if member.pid else ""))
    if member.status == runner.HANG:
        if member.detail:
            title = f"Collecting did not finish within {facts.timeout:g} s"
            evidence.append("stack of the collecting thread when the time ran out:\n"
                            + member.detail.rstrip())
            why = ("The member's event loop answered, but the call that gathers its facts "
                   "blocked; that thread is still blocked there.")
        else:
            title = f"No answer within {facts.timeout:g} s: the member is frozen or unreachable"
            why = ("Not even the member's event loop answered: the process is frozen (often C "
                   "code holding the GIL) or the network to it is down. Tasks sent to it "
                   "will wait until Dask removes it (worker-ttl, 5 minutes by default).")
        return FLT002.finding(
            evidence, title=title, why=why,
            fix="Dump its stacks on its host (py-spy dump --native --pid PID), restart it "
                "(client.restart_workers([...])) and run `numdoctor check` there.")
    if member.status == runner.LOST:
        return FLT003.finding(
            evidence, title="The connection broke while collecting: the worker died or left",
            why="A worker that dies while answering a diagnostic call is not safe to run "
                "tasks on either.",
            fix="Read the worker's and its nanny's logs (exit status, signal) and the host's "
                "kernel log (dmesg | grep -i oom); run `numdoctor check` on that host.")
    if member.detail:
        evidence.append(member.detail.rstrip())
    # Unpickling the collector fails before it runs; Dask may wrap the error in an Exception.
    missing = "ModuleNotFoundError" in member.error and "'numdoctor" in member.error
    from numdoctor._version import __version__

    return FLT004.finding(
        evidence,
        title="numdoctor is not installed there" if missing else "Collecting raised an error",
        why="Without its facts this member is missing from the comparison.",
        fix=f"pip install numdoctor=={__version__} in that environment (the same version as "
            "here)" if missing or "snapshot cannot be read" in member.error else
            "Report this with the JSON report if it looks like a numdoctor bug.")


def where(labels: list[str], facts: FleetFacts) -> str:
    """"all 8 workers", "worker tcp://a", "workers tcp://a, tcp://b, client"..."""
    from numdoctor.fleet.collect import WORKER

    all_workers = [m.address for m in facts.workers]
    workers = [label.split(" ", 1)[1] for label in labels if label.startswith(f"{WORKER} ")]
    parts = []
    if workers:
        missing = [a for a in all_workers if a not in workers]
        if not missing and len(workers) > 1:
            parts.append(f"all {len(workers)} workers")
        elif len(workers) == 1:
            parts.append(f"worker {workers[0]}")
        elif len(workers) > _LIST_INLINE and len(missing) < len(workers):
            parts.append(f"{len(workers)} of {len(all_workers)} workers (all but "
                         f"{', '.join(missing)})")
        else:
            parts.append("workers " + ", ".join(workers))
    parts += [label for label in labels if not label.startswith(f"{WORKER} ")]
    return ", ".join(parts)


def difference_findings(differences: list[Difference], facts: FleetFacts) -> list[Finding]:
    """FLT001: one finding per category and group of members that differ the same way."""
    from numdoctor.fleet.diff import CATEGORY_ORDER

    why, fix = _advice()
    groups: dict[tuple, list[tuple[Difference, str]]] = defaultdict(list)
    for difference in differences:
        if difference.majority is None:
            groups[difference.category, difference.severity, None].append((difference, ""))
            continue
        for value, members in difference.deviations:
            groups[difference.category, difference.severity, tuple(members)].append(
                (difference, value))
    findings = []
    for (category, severity, members), items in sorted(
            groups.items(), key=lambda kv: (CATEGORY_ORDER.index(kv[0][0]), str(kv[0][2]))):
        settings = _unique(d.key for d, _ in items)
        if members is None:
            labels = _unique(m for d, _ in items for _, ms in d.deviations for m in ms)
            title = f"Workers disagree on {category} (no majority): {_names(settings)}"
            evidence = [f"{d.key}: " + "; ".join(
                f"{value} on {addresses(ms)}" for value, ms in d.deviations)
                for d, _ in items]
        else:
            labels = list(members)
            count = len(members)
            if items[0][0].outsiders:
                title = f"The {members[0]} differs from the workers in {category}: " \
                        f"{_names(settings)}"
                evidence = [f"{d.key}: {value} (workers: {d.majority}, on {d.compared})"
                            for d, value in items]
            else:
                title = (f"{count} worker{'s' if count != 1 else ''} "
                         f"differ{'s' if count == 1 else ''} from the majority in {category}: "
                         f"{_names(settings)}")
                evidence = [f"{d.key}: {d.describe(value)} (majority: {d.majority}, on "
                            f"{len(d.majority_members)} of {d.compared} workers)"
                            for d, value in items]
        if len(evidence) > _MAX_EVIDENCE:
            hidden = len(evidence) - _MAX_EVIDENCE
            evidence = [*evidence[:_MAX_EVIDENCE],
                        f"... and {hidden} more (outcome.diff in --format json lists all)"]
        findings.append(FLT001.finding(
            evidence, title=title, severity=severity, where=where(labels, facts),
            why=why.get(category, ""), fix=fix.get(category, "")))
    return findings


@cache
def _advice() -> tuple[dict[str, str], dict[str, str]]:
    """(why, fix) per category of difference."""
    from numdoctor.fleet.diff import (
        CPU,
        CPUS,
        ENVIRONMENT,
        LIBRARIES,
        PACKAGES,
        PYTHON,
        THREADS,
    )

    why = {
        PYTHON: "Tasks and results are pickled between members; Python versions must match.",
        PACKAGES: "The same task can import other code, or fail to unpickle, depending on "
                  "where it runs.",
        LIBRARIES: "Numerical results, speed and crashes depend on which BLAS/OpenMP "
                   "runtime serves the call, so they depend on the worker.",
        THREADS: "Workers with other limits run different numbers of threads per task: "
                 "some oversubscribe, some leave CPUs idle.",
        ENVIRONMENT: "Variables that steer the numerical stack differ, so behaviour differs.",
        CPU: "Binaries built for instructions one worker lacks die there with Illegal "
             "instruction; kernels chosen per CPU give results that differ in the last bits.",
        CPUS: "Pools sized for one worker's CPUs are wrong on the others.",
    }
    fix = {
        PYTHON: "Run every member from the same image or environment.",
        PACKAGES: "Install the same versions everywhere (one lock file or container tag) and "
                  "restart the odd workers.",
        LIBRARIES: "Use one environment for all workers; remove LD_PRELOAD or preload "
                   "scripts that load another runtime on some of them.",
        THREADS: "Set thread variables in one place, e.g. Dask's "
                 "distributed.nanny.pre-spawn-environ, or the script that starts all "
                 "workers.",
        ENVIRONMENT: "Start all workers with the same environment.",
        CPU: "Build for the oldest CPU, or pin tasks that need newer instructions with worker "
             "resources.",
        CPUS: "Size thread pools per worker from its own CPUs (OMP_NUM_THREADS per host).",
    }
    return why, fix


def oversubscription_findings(facts: FleetFacts) -> list[Finding]:
    """FLT005: per host, Dask threads × pool size per thread above the CPUs there."""
    by_host: dict[str, list[MemberFacts]] = defaultdict(list)
    for member in facts.workers:
        if member.ok:
            by_host[member.host or member.hostname].append(member)
    findings = []
    for members in (by_host[key] for key in sorted(by_host)):
        host = members[0].machine
        cpus = max((m.snapshot.system.effective_cpus or 0) for m in members if m.snapshot)
        if not cpus:
            continue
        lines, demand = [], 0
        for member in members:
            pool, source = _pool_size(member)
            threads = member.nthreads or 1
            demand += threads * pool
            lines.append(f"worker {member.address}: {threads} Dask thread(s) × {pool} "
                         f"({source}) = {threads * pool}")
        if demand <= cpus:
            continue
        findings.append(FLT005.finding(
            severity=Severity.WARNING if demand >= 2 * cpus else Severity.INFO,
            evidence=[f"host {host}: {cpus} effective CPU(s), {len(members)} worker(s)",
                      *lines, f"total: {demand} threads may run at once on {cpus} CPU(s)"],
            title=f"{demand} threads may run at once on host {host}, which has {cpus} CPU(s)",
            why="Every Dask thread that calls into BLAS/OpenMP can start a whole pool; more "
                "runnable threads than CPUs make compute-bound tasks slower.",
            fix="Keep workers × threads × pool size ≤ CPUs on each host: set OMP_NUM_THREADS "
                "through distributed.nanny.pre-spawn-environ or the workers' environment, "
                "or start fewer workers/threads.",
            where=where([m.label for m in members], facts)))
    return findings


def _pool_size(member: MemberFacts) -> tuple[int, str]:
    """The pool one task may start on this worker, and where that number comes from."""
    snapshot = member.snapshot
    assert snapshot is not None
    sizes = [(lib.num_threads, lib.vendor) for lib in snapshot.libraries
             if lib.family in ("openmp", "blas") and lib.num_threads]
    if sizes:
        size, vendor = max(sizes)
        return size, f"{VENDOR_NAMES.get(vendor, vendor)} pool"
    for name in THREAD_LIMIT_VARS:
        value = snapshot.environment.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value), f"{name}={value}, no pool loaded yet"
    count = snapshot.system.cpu_count or 1
    return count, "no thread limit set: a pool would size to the host's CPUs"


# -- outcome ----------------------------------------------------------------------------------

def addresses(labels: list[str]) -> str:
    from numdoctor.fleet.collect import WORKER

    return ", ".join(label.split(" ", 1)[1] if label.startswith(f"{WORKER} ") else label
                     for label in labels)


def _names(settings: list[str]) -> str:
    shown = settings[:4]
    more = len(settings) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


IN_HAND_SHOWN = 5  # scenarios named in the evidence of a worker's failure


def probe_worker_failure(share: Share, result: FleetProbe) -> Finding:
    """FLT002-FLT004 for a worker that could not take its share of a fleet probe."""
    from numdoctor.fleet import runner

    evidence = [share.error] if share.error else []
    if share.machine:
        evidence.append(f"host {share.machine}" + (f", pid {share.pid}" if share.pid else ""))
    evidence.append(f"during the probe's {share.stage}")
    if share.in_hand:
        shown = share.in_hand[:IN_HAND_SHOWN]
        more = len(share.in_hand) - len(shown)
        evidence.append("scenarios it had: " + "; ".join(shown)
                        + (f" and {more} more" if more else ""))
    moved = sum(1 for p in result.placements if share.address in p.moved_from)
    dropped = sum(1 for n in result.not_run if share.address in n.tried)
    if moved or dropped:
        evidence.append(f"of those, {moved} ran on another worker and {dropped} were not run "
                        "(a scenario is given to another worker once)")
    if share.untried:
        evidence.append(f"{len(share.untried)} failure(s) it found were not minimised")
    stage = f"the probe's {share.stage}"
    rule_ = {runner.HANG: FLT002, runner.LOST: FLT003}.get(share.status, FLT004)
    if share.status == runner.HANG and share.detail:
        evidence.append("stack of the thread running it when the time ran out:\n"
                        + share.detail.rstrip())
        return rule_.finding(
            evidence, title=f"The worker did not finish {stage} in time",
            where=share.label,
            why="The worker's event loop answered, but the call running the probe's "
                "subprocesses was stuck; that thread is still running there.",
            fix="Dump its stacks (py-spy dump --native --pid PID) on its host and restart it "
                "(client.restart_workers([...])).")
    if share.status == runner.HANG:
        return rule_.finding(
            evidence, where=share.label,
            title=f"No answer during {stage}: the worker is frozen or unreachable",
            why="Not even the worker's event loop answered. The probe's scenarios run in "
                "subprocesses, so this is the worker process itself (C code holding the GIL) "
                "or the network to it.",
            fix="Dump its stacks (py-spy dump --native --pid PID) on its host, restart it "
                "(client.restart_workers([...])) and run `numdoctor check` there.")
    if share.status == runner.LOST:
        return rule_.finding(
            evidence, where=share.label,
            title=f"The connection broke during {stage}: the worker died or left",
            why="The scenarios run in subprocesses of the worker, so its own death comes from "
                "outside them: the OOM killer, a nanny restart, the node going away.",
            fix="Read the worker's and its nanny's logs and the host's kernel log "
                "(dmesg | grep -i oom).")
    if share.detail:
        evidence.append(share.detail.rstrip())
    from numdoctor._version import __version__

    if "No module named 'numdoctor'" in share.error:
        title = "numdoctor is not installed there"
    elif "No module named 'numdoctor." in share.error:
        title = "numdoctor there is another version, without the probe"
    else:
        title = f"{stage[0].upper()}{stage[1:]} raised an error on the worker"
    return rule_.finding(
        evidence, where=share.label, title=title,
        why="This worker could not take its share of the probe.",
        fix=f"pip install numdoctor=={__version__} in that environment (the same version as "
            "here)" if title.startswith("numdoctor") else
            "Report this with the JSON report if it looks like a numdoctor bug.")
