"""Thread pools against the CPUs the process may really use."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import describe_library
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.environment import THREAD_LIMIT_VARS
from numdoctor.snapshot.model import Snapshot


def _cpu_evidence(snapshot: Snapshot) -> list[str]:
    system = snapshot.system
    lines = [f"os.cpu_count() = {system.cpu_count}",
             f"CPU affinity allows {system.affinity_count} CPU(s)"]
    if system.cgroup.cpu_quota is not None:
        lines.append(f"cgroup v{system.cgroup.version} CPU quota = {system.cgroup.cpu_quota:g} "
                     f"CPU(s) ({system.cgroup.cpu_quota_source})")
    lines.append(f"effective CPUs = {system.effective_cpus}")
    return lines


@rule("THR001", "Thread pools oversubscribe the effective CPUs", Severity.WARNING)
def oversubscription(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A thread pool is sized above the number of CPUs the process may actually use, or the
    pools that have started threads add up to well above it. The effective CPU count is the
    smallest of `os.cpu_count()`, the CPU affinity mask and the cgroup CPU quota (a container
    limit); most runtimes size their pools from the first, which ignores the other two.

    **Why it matters.** More runnable threads than CPUs means time-slicing, cache thrashing
    and, under a cgroup quota, CFS throttling: BLAS-heavy code commonly runs 2–10x slower. At
    the extreme OpenBLAS fails with "pthread_create failed … Resource temporarily unavailable".

    **Fix.** Set `OMP_NUM_THREADS` (and `OPENBLAS_NUM_THREADS`/`MKL_NUM_THREADS` where a
    library ignores it) to the effective CPU count — divided by the number of worker processes
    when you run several — before the program starts, or call
    `threadpoolctl.threadpool_limits(n)`.
    """
    cpus = snapshot.system.effective_cpus
    if not cpus:
        return
    oversized = [lib for lib in snapshot.libraries if (lib.num_threads or 0) > cpus]
    torch = snapshot.framework("torch")
    framework_lines = []
    if torch and (torch.details.get("num_threads") or 0) > cpus:
        framework_lines.append(f"torch.get_num_threads() = {torch.details['num_threads']}")
    started = [lib for lib in snapshot.libraries if lib.active_threads]
    running = sum(lib.active_threads or 0 for lib in started)
    if oversized or framework_lines:
        yield rule.finding(
            [*_cpu_evidence(snapshot), *(describe_library(lib) for lib in oversized),
             *framework_lines],
            title=f"Thread pools are sized above the {cpus} effective CPU(s)",
            why="Each pool will run more threads than there are CPUs to run them.",
            fix=f"export OMP_NUM_THREADS={cpus} (before starting Python), or "
                f"threadpoolctl.threadpool_limits({cpus}).",
        )
    elif len(started) > 1 and running > 2 * cpus:
        yield rule.finding(
            [*_cpu_evidence(snapshot), *(describe_library(lib) for lib in started)],
            title=f"{running} pool threads from {len(started)} libraries on {cpus} CPU(s)",
            why="Pools of different libraries run side by side and together exceed the CPUs.",
            fix="Limit each pool so their sum fits, e.g. "
                f"threadpoolctl.threadpool_limits({max(1, cpus // len(started))}).",
        )


@rule("THR002", "No thread limit is set while the CPU quota is below the host's CPUs",
      Severity.WARNING)
def quota_without_limit(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    The process may use fewer CPUs than the host has (a container CPU quota, `taskset`, a
    Slurm allocation), and no thread-count variable is set. OpenBLAS, MKL, libgomp and most
    frameworks size their pools from the host's CPU count, not from the quota.

    **Why it matters.** In a container limited to 2 CPUs on a 64-core host every pool starts
    64 threads; the kernel throttles the cgroup and compute-bound code slows down by an order
    of magnitude.

    **Fix.** Export `OMP_NUM_THREADS` (and `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`) equal to
    the effective CPU count in the container or job script.
    """
    system = snapshot.system
    if not system.cpu_count or not system.effective_cpus:
        return
    if system.effective_cpus >= system.cpu_count:
        return
    if any(var in snapshot.environment for var in THREAD_LIMIT_VARS):
        return
    yield rule.finding(
        [*_cpu_evidence(snapshot), "none of " + ", ".join(THREAD_LIMIT_VARS) + " is set"],
        title=f"Pools will size to {system.cpu_count} CPUs but only "
              f"{system.effective_cpus} are available",
        fix=f"export OMP_NUM_THREADS={system.effective_cpus} "
            f"OPENBLAS_NUM_THREADS={system.effective_cpus} MKL_NUM_THREADS="
            f"{system.effective_cpus}",
    )
