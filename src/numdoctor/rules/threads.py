"""Thread pools against the CPUs the process may really use."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import describe_library
from numdoctor.rules._pools import knob_for, thread_pools
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
    The pools are those of the native libraries (OpenMP, BLAS) and the frameworks' own:
    torch's intra-op and inter-op pools, TensorFlow's intra-op and inter-op pools, XLA's CPU
    pool, numba's and numexpr's.

    **Why it matters.** More runnable threads than CPUs means time-slicing, cache thrashing
    and, under a cgroup quota, CFS throttling: BLAS-heavy code commonly runs 2–10x slower. At
    the extreme OpenBLAS fails with "pthread_create failed … Resource temporarily unavailable".

    **Fix.** Set `OMP_NUM_THREADS` (and `OPENBLAS_NUM_THREADS`/`MKL_NUM_THREADS` where a
    library ignores it) to the effective CPU count — divided by the number of worker processes
    when you run several — before the program starts, or call
    `threadpoolctl.threadpool_limits(n)`. Frameworks have their own knobs:
    `torch.set_num_threads(n)` and `torch.set_num_interop_threads(n)`;
    `tf.config.threading.set_intra_op_parallelism_threads(n)` and
    `set_inter_op_parallelism_threads(n)` (or `TF_NUM_INTRAOP_THREADS`/`TF_NUM_INTEROP_THREADS`);
    `PJRT_NPROC` for JAX's CPU backend; `NUMBA_NUM_THREADS`; `NUMEXPR_NUM_THREADS`.
    """
    cpus = snapshot.system.effective_cpus
    if not cpus:
        return
    pools = thread_pools(snapshot)
    oversized = [pool for pool in pools if pool.size > cpus]
    started = [lib for lib in snapshot.implementations() if lib.active_threads]
    running = sum(lib.active_threads or 0 for lib in started)
    if oversized:
        fixes = [f"export OMP_NUM_THREADS={cpus} (before starting Python), or "
                 f"threadpoolctl.threadpool_limits({cpus})"] if any(
            not pool.framework for pool in oversized) else []
        fixes += [knob_for(pool, cpus) for pool in oversized if pool.framework]
        yield rule.finding(
            [*_cpu_evidence(snapshot), *(pool.evidence for pool in oversized)],
            title=f"Thread pools are sized above the {cpus} effective CPU(s)",
            why="Each pool will run more threads than there are CPUs to run them.",
            fix="; ".join(dict.fromkeys(fixes)) + ".",
        )
    elif len(started) > 1 and running > 2 * cpus:
        yield rule.finding(
            [*_cpu_evidence(snapshot), *(describe_library(lib, snapshot) for lib in started)],
            title=f"{running} pool threads from {len(started)} libraries on {cpus} CPU(s)",
            why="Pools of different libraries run side by side and together exceed the CPUs.",
            fix="Limit each pool so their sum fits, e.g. "
                f"threadpoolctl.threadpool_limits({max(1, cpus // len(started))}).",
        )


@rule("THR003", "Thread pools of several runtimes can together run more threads than the "
      "effective CPUs", Severity.INFO)
def pools_together(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    Each runtime in the process keeps its own pool of worker threads, sized as if it were
    alone: the BLAS, the OpenMP runtime(s), and the frameworks' own pools (TensorFlow's
    intra-op and inter-op pools, each sized to every schedulable CPU; torch's inter-op pool;
    XLA's CPU pool). Together they can run more threads at once than the process has
    effective CPUs. Each pool is counted once: a BLAS threaded with OpenMP, and torch's
    intra-op pool, are their OpenMP runtime's pool. Copies of one BLAS alone are BLAS001's
    finding.

    **Why it matters.** While only one runtime works at a time, idle pools cost nothing:
    this is information, not an alarm. When they work together — TensorFlow ops while NumPy
    calls its BLAS, a torch model next to scikit-learn's OpenMP loops, tf.data calling NumPy
    — the threads time-slice the same cores: `np.linalg.svd` slows down several-fold, and
    OpenMP workers spinning for work make the process look hung.

    **Fix.** If the runtimes work at the same time, give each pool a share of the CPUs
    before the work starts, with the knob listed beside each pool in the evidence:
    `threadpoolctl.threadpool_limits(n)` or `OMP_NUM_THREADS`/`OPENBLAS_NUM_THREADS` for
    OpenMP and BLAS; `torch.set_num_threads(n)` and `torch.set_num_interop_threads(n)`;
    `tf.config.threading.set_intra_op_parallelism_threads(n)` and
    `tf.config.threading.set_inter_op_parallelism_threads(n)` (or `TF_NUM_INTRAOP_THREADS`,
    `TF_NUM_INTEROP_THREADS`); `PJRT_NPROC` for JAX.
    """
    cpus = snapshot.system.effective_cpus
    if not cpus:
        return
    pools = thread_pools(snapshot)
    total = sum(pool.size for pool in pools)
    # BLAS copies alone are BLAS001's finding, with the same total.
    if len(pools) < 2 or total <= cpus or all(pool.blas for pool in pools):
        return
    share = max(1, cpus // len(pools))
    native = [pool for pool in pools if not pool.framework]
    knobs = [f"OMP_NUM_THREADS={share} (or threadpoolctl.threadpool_limits({share})) for the "
             "OpenMP and BLAS pools"] if native else []
    knobs += [knob_for(pool, share) for pool in pools if pool.framework]
    yield rule.finding(
        [*_cpu_evidence(snapshot),
         *(f"{pool.evidence}; sized by {pool.knob}" for pool in pools),
         f"together: {total} threads on {cpus} effective CPU(s)"],
        title=f"{len(pools)} thread pools can run {total} threads at once on {cpus} "
              "effective CPU(s)",
        why="Each pool is sized as if it were alone; when the runtimes work at the same time "
            "their threads time-slice the same cores and each slows down.",
        fix=f"If they work at the same time, give each pool a share ({share} thread(s) on "
            f"{cpus} CPU(s)) before the work starts: " + "; ".join(dict.fromkeys(knobs)) + ".",
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
