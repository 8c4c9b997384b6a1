"""Codes that `numdoctor fleet` emits about a Dask cluster as a whole (numdoctor.fleet)."""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.registry import Stage, declare

declare(
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

declare(
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

declare(
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

declare(
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

declare(
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

declare(
    "FLT006", "The cluster has no workers", Severity.WARNING,
    """
    The scheduler listed no worker when numdoctor asked, so only the scheduler and the client
    were examined and nothing could be compared.

    **Fix.** Wait until the workers have connected (`client.wait_for_workers(n)`) and run
    `numdoctor fleet` again; check the workers' logs if they never connect.
    """,
    Stage.FLEET,
)
