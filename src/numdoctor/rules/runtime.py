"""Codes that `numdoctor run` and `numdoctor.isolate()` emit (numdoctor.supervise).

Hangs (HANG), deaths by signal (SIG), the OOM killer (OOM), memory growth (MEM), GPU state
and GPU library errors (GPU), and messages recognised on stderr (MSG). Where a message has the
same cause as a `check` rule, `run` emits that rule's code instead (OMP002 for OMP Error #15,
MKL001, THR001, FORK001, and the NumPy ABI codes).
"""

from __future__ import annotations

from numdoctor.findings import Severity
from numdoctor.rules.registry import Stage, declare

# -- hangs -----------------------------------------------------------------------------------

declare(
    "HANG001", "The program stopped making progress and uses no CPU (deadlock or wait)",
    Severity.ERROR,
    """
    For `--hang-timeout` seconds the program wrote no output, called no
    `numdoctor.heartbeat()`, and its process tree did no work: no process used more than
    10 % of a CPU on average, and all together less than 30 %. Every thread is waiting: for a
    lock, a condition, a child process, a pipe or socket, or a thread-pool barrier that will
    never be released.

    The evidence names every process of the tree with its CPU use and where its threads wait
    (innermost Python frame, and the native library when the native stack was read); the
    report has the full stacks of every thread of every process.

    **Why it matters.** Nothing will change by waiting longer. The classic causes in numerical
    code: `fork()` after an OpenMP or BLAS pool started (see FORK001), a DataLoader or
    multiprocessing worker blocked on a full queue, a lock taken twice, two OpenMP runtimes in
    one process (OMP001/OMP003), a collective operation (NCCL, MPI, Gloo) that one rank never
    joined.

    **Fix.** Read where the main thread waits and on what; the findings next to this one name
    the cause when numdoctor recognises it. If the program is in fact waiting legitimately
    (input, a remote service), raise `--hang-timeout` or call `numdoctor.heartbeat()` while it
    waits.
    """,
    Stage.RUN,
)

declare(
    "HANG002", "A process spins at full CPU without making progress", Severity.ERROR,
    """
    For the spin timeout (`--spin-timeout`, by default `--hang-timeout`) the program wrote no
    output and called no `numdoctor.heartbeat()`, while at least one of its processes kept a
    CPU busy. It is running, not deadlocked: a busy-wait, a livelock, an infinite loop, or a
    computation much longer than expected.

    numdoctor treats this like a hang (dump, kill, exit 124) but labels it differently, because
    the causes and the fixes differ: the stacks of the busy thread (marked "running" by py-spy)
    show the loop.

    **Why it matters.** Spin-waiting threads (OpenMP's `OMP_WAIT_POLICY=active`, a
    `while not done: pass` loop) burn CPU that other work needs; an infinite loop never ends.

    **Fix.** Look at the busy thread's innermost frames. If the program is in fact computing
    legitimately without output, call `numdoctor.heartbeat()` in its loop, or give a longer
    `--spin-timeout` (`0` reports spinning only at `--timeout`).
    """,
    Stage.RUN,
)

declare(
    "HANG003", "The program ran past its --timeout", Severity.ERROR,
    """
    The hard `--timeout` (wall-clock seconds since the start) expired. numdoctor dumped every
    thread of every process, then killed the whole process tree and exited with status 124,
    like `timeout(1)`.

    The evidence says what the program was doing in the last seconds: still producing output,
    idle (then HANG001 usually explains more) or spinning.

    **Fix.** If the program was still making progress, it simply needs more time. Otherwise
    read the stacks: where the main thread was when time ran out.
    """,
    Stage.RUN,
)

# -- deaths by signal ------------------------------------------------------------------------

_CULPRIT = """
    The culprit is the first native frame of the faulting thread that is not the C library,
    the C++ runtime, the dynamic loader, libffi or the Python interpreter, mapped to the pip
    package that installed it. Where native frames were not available (faulthandler prints
    native frames only from Python 3.14), the innermost Python frame names the module that
    called into native code; the kernel log, when readable, names the library that held the
    faulting instruction.
"""

declare(
    "SIG001", "A process crashed with a segmentation fault (SIGSEGV)", Severity.ERROR,
    f"""
    The process read or wrote memory it does not own: a NULL or dangling pointer, a buffer
    overrun, a stack overflow, or a binary incompatibility (an extension built against another
    version of a library it calls into). numdoctor reports the faulthandler traceback of the
    faulting thread and exits with 139 (128 + 11), like a shell.
    {_CULPRIT}
    **Fix.** Update or reinstall the culprit package so that its binary matches the libraries
    it uses (see the ABI and MSG findings next to this one); report the traceback to the
    package with this report. A crash inside `ctypes` means the program passed a bad pointer.
    """,
    Stage.RUN,
)

declare(
    "SIG002", "A process aborted (SIGABRT)", Severity.ERROR,
    f"""
    Native code called `abort()`: a failed assertion, an uncaught C++ exception
    (`terminate called after throwing…`), glibc's heap-corruption check (`free(): invalid
    pointer`), or a runtime refusing a fatal state (Intel OpenMP's "OMP: Error #15"). The
    message printed just before the abort usually says which: numdoctor recognises the common
    ones and reports them as their own findings. Exit status 134.
    {_CULPRIT}
    **Fix.** Follow the finding for the message printed before the abort.
    """,
    Stage.RUN,
)

declare(
    "SIG003", "A process crashed with a bus error (SIGBUS)", Severity.ERROR,
    f"""
    A memory access the hardware could not complete: most often a memory-mapped file that was
    truncated or removed while mapped (a dataset or model file rewritten underneath a running
    job, an `np.memmap` of a file on a full or vanished disk), or `/dev/shm` running out of
    space (PyTorch DataLoader workers share tensors through it; Docker's default is 64 MB).
    Exit status 135.
    {_CULPRIT}
    **Fix.** Make `/dev/shm` larger (`docker run --shm-size=8g`) or use fewer DataLoader
    workers; never modify a file that a running program has memory-mapped.
    """,
    Stage.RUN,
)

declare(
    "SIG004", "A process died from an arithmetic exception (SIGFPE)", Severity.ERROR,
    f"""
    An integer division by zero or overflow in native code (floating-point errors do not raise
    SIGFPE unless traps were enabled). Exit status 136.
    {_CULPRIT}
    **Fix.** Check the sizes passed to the culprit: an empty array or a zero-sized dimension
    reaching code that divides by it is the usual cause.
    """,
    Stage.RUN,
)

declare(
    "SIG005", "A process executed an illegal instruction (SIGILL)", Severity.ERROR,
    f"""
    The CPU refused an instruction. Almost always a binary built for a newer CPU than this
    one: a wheel or library compiled with `-march=native` or for AVX-512/AVX2 running on a
    CPU without them, or AMX instructions on a CPU or kernel without AMX. numdoctor decodes
    the faulting instruction when the kernel log names it and lists the CPU extensions this
    machine lacks. A `ud2` instruction is different: code that crashes on purpose
    (`__builtin_trap()`, a failed check). Exit status 132.
    {_CULPRIT}
    **Fix.** Install a build of the culprit package for this CPU (the generic pip wheel rather
    than a locally optimised build; on a cluster, build on the oldest node type), or run on a
    machine with the missing extension.
    """,
    Stage.RUN,
)

declare(
    "SIG006", "A process was killed with SIGKILL (not by the OOM killer)", Severity.ERROR,
    """
    SIGKILL cannot be caught, so the program had no chance to say anything. numdoctor found
    no sign of the kernel's OOM killer (no rise of the cgroup `oom_kill` counter, no kernel log
    record), so someone else sent it: a job scheduler enforcing a limit (Slurm, Kubernetes
    after a failed liveness probe), a user, or a watchdog. Exit status 137.

    **Fix.** Look at the scheduler's logs for the job. If memory was involved, the peak RSS in
    the report shows how close the program came to its limit.
    """,
    Stage.RUN,
)

declare(
    "SIG007", "A process was ended by a signal", Severity.WARNING,
    """
    The program's main process (or a worker) was ended by a signal other than the crash
    signals: SIGTERM (a polite stop request: a scheduler, `kill`, a container shutdown),
    SIGHUP (its terminal went away), SIGINT, SIGPIPE (it wrote to a pipe nobody reads), or
    SIGXCPU/SIGXFSZ (a resource limit). numdoctor exits with 128 + the signal number.

    **Fix.** Find out who sent it; for SIGPIPE, whether the reader of the program's output
    exited early (`| head`).
    """,
    Stage.RUN,
)

declare(
    "OOM001", "The kernel's OOM killer killed a process", Severity.ERROR,
    """
    A process of the program died from SIGKILL and the kernel's out-of-memory killer was
    responsible: the `oom_kill` counter of its memory cgroup (`memory.events` on cgroup v2,
    `memory.oom_control` on v1) rose during the run, or the kernel log recorded the kill.
    The evidence gives the process's peak resident memory, the cgroup's limit and peak, and
    the largest processes of the tree.

    **Why it matters.** The program did not crash: it needed more memory than the container
    or machine allows. Nothing is printed by the program itself, which makes this look like a
    mysterious "Killed".

    **Fix.** Reduce the peak: smaller batches, fewer DataLoader workers (each holds a copy of
    what it touches), `float32` instead of `float64`, releasing references to large arrays;
    or raise the memory limit. If the memory grew steadily (MEM001), look for a leak first.
    """,
    Stage.RUN,
)

declare(
    "MEM001", "Resident memory grew steadily: leak suspect", Severity.WARNING,
    """
    The resident memory of a process grew steadily for most of the run (a straight-line trend
    over at least 10 seconds and 10 samples, at least 64 MiB and 25 % above where the trend
    started, with no sizeable drop). The evidence gives the growth rate and the process.

    **Why it matters.** A program that keeps growing eventually meets its memory limit (see
    OOM001). Typical causes in numerical code: keeping tensors that hold an autograd graph
    (`losses.append(loss)` instead of `loss.item()`), caches without a bound, appending to a
    list every step, and DataLoader workers touching Python objects of a large dataset
    (copy-on-write turns shared pages into private ones).

    **Fix.** Watch the named process with `tracemalloc` (Python allocations) or
    `memray`, and check what the loop keeps a reference to. Growth that levels off later is
    a cache warming up, not a leak.
    """,
    Stage.RUN,
)

# -- GPUs ------------------------------------------------------------------------------------

declare(
    "GPU001", "GPU state when the program hung or crashed", Severity.INFO,
    """
    Utilisation and memory of every NVIDIA GPU (read through NVML) at the moment numdoctor
    detected the hang or the crash, and which processes of the program held GPU memory.

    **How to read it.** A GPU at high utilisation while the host side looks stuck means the
    program is waiting for the GPU (a long or stuck kernel, a collective operation waiting for
    another rank). A GPU at 0 % with memory held by the program means the host side is stuck
    (a deadlock in Python or native host code): read the host stacks.
    """,
    Stage.RUN,
)

declare(
    "GPU002", "A cuBLAS or cuSOLVER call failed", Severity.ERROR,
    """
    The program printed a cuBLAS status (`CUBLAS_STATUS_…`) or a cuSOLVER failure. The
    finding explains the status: `NOT_INITIALIZED` and `ALLOC_FAILED` almost always mean the
    GPU was out of memory when the library needed its workspace; `EXECUTION_FAILED` is often
    the late report of an earlier asynchronous error; `INVALID_VALUE` points at shapes,
    strides or sizes above 2^31; `ARCH_MISMATCH` at a GPU too old for the build.

    **Fix.** For memory: smaller batches, `torch.cuda.empty_cache()` before the call, fewer
    processes per GPU. For asynchronous errors: run once with `CUDA_LAUNCH_BLOCKING=1` so the
    failing kernel reports itself. For cuSOLVER: check the input for NaN/Inf and
    ill-conditioning (`numdoctor.linalg`).
    """,
    Stage.RUN,
)

declare(
    "GPU003", "The GPU ran out of memory", Severity.ERROR,
    """
    PyTorch, TensorFlow, JAX or CUDA reported an out-of-memory error on the GPU.

    **Fix.** Smaller batches, mixed precision, gradient checkpointing, freeing tensors you no
    longer need (and not keeping references to outputs that hold the autograd graph); with
    PyTorch, `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` reduces fragmentation. Check
    that no other process holds memory on the same GPU (GPU001 lists them at a crash).
    """,
    Stage.RUN,
)

declare(
    "GPU004", "A GPU kernel faulted (illegal memory access, device-side assert)", Severity.ERROR,
    """
    A CUDA kernel failed: an illegal memory access, a device-side assertion (an index out of
    range in an embedding or a loss function is the classic case), a misaligned address or an
    unspecified launch failure. CUDA reports such errors asynchronously, so the Python line in
    the traceback is often not the one that launched the kernel, and the CUDA context is
    unusable afterwards.

    **Fix.** Run once with `CUDA_LAUNCH_BLOCKING=1` (and `TORCH_USE_CUDA_DSA=1` on PyTorch
    builds that support it) to get the failing operation; check indices against their
    tensor's size; run the same step on CPU, where the error message is explicit.
    """,
    Stage.RUN,
)

declare(
    "GPU005", "The installed build has no code for this GPU", Severity.ERROR,
    """
    "no kernel image is available for execution on the device": the framework was compiled for
    other GPU architectures (compute capabilities) than this GPU's — a GPU too old or too new
    for the wheel.

    **Fix.** Install a build that includes this GPU's architecture (PyTorch's wheels list their
    supported `sm_` versions in `torch.cuda.get_arch_list()`), or build from source with
    `TORCH_CUDA_ARCH_LIST` set.
    """,
    Stage.RUN,
)

# -- messages on stderr ----------------------------------------------------------------------

declare(
    "MSG001", "A C++ exception escaped and ended the process", Severity.ERROR,
    """
    "terminate called after throwing an instance of '…'": C++ code threw an exception that
    nothing caught, so the C++ runtime called `std::terminate()`, which aborts (SIGABRT). With
    PyTorch (`c10::Error`) this happens where an error cannot become a Python exception: in a
    destructor, a background thread, or a worker's C++ side. The `what():` text printed after
    the message says what failed.

    **Fix.** Read the `what()` text in the evidence; for PyTorch it usually names the failed
    check (a shape, a device, a dtype) and the operator.
    """,
    Stage.RUN,
)

declare(
    "MSG002", "glibc detected heap corruption", Severity.ERROR,
    """
    glibc's allocator found its own bookkeeping damaged ("free(): invalid pointer", "double
    free or corruption", "malloc(): corrupted top size", "munmap_chunk(): invalid pointer") and
    aborted. Something wrote outside an allocation or freed memory twice — often well before
    the abort. A frequent cause in Python stacks is two copies of a library (or two C++
    runtimes) where memory allocated by one is freed by the other, and extensions compiled
    against a different version of a library than the one loaded.

    **Fix.** Make sure each native library is loaded once (numdoctor check), update the
    packages involved, and reproduce with `PYTHONMALLOC=debug` or under AddressSanitizer to
    find the first bad write.
    """,
    Stage.RUN,
)

declare(
    "MSG003", "A binary needs CPU features this machine lacks", Severity.ERROR,
    """
    A library reported that it was built for CPU extensions this machine does not have (NumPy:
    "NumPy was built with baseline optimizations: (…) but your machine doesn't support: (…)"),
    or a process died with "Illegal instruction". The evidence lists the x86-64 level this CPU
    reaches and the extensions it lacks.

    **Fix.** Install a build made for this CPU (the generic pip wheel rather than a locally
    optimised build), or run on a newer machine.
    """,
    Stage.RUN,
)

declare(
    "MSG004", "A compiled module needs a symbol no loaded library provides", Severity.ERROR,
    """
    Loading an extension failed with "undefined symbol: …": it was built against a different
    version of a library it links to (a torch extension built for another torch, a package
    built against a newer NumPy or a newer C++ ABI), or the library that should provide the
    symbol is not loaded.

    **Fix.** Reinstall the failing package so that it matches the version of the library the
    symbol belongs to (demangle the symbol with `c++filt` to see which); build extensions in
    the same environment that runs them.
    """,
    Stage.RUN,
)

declare(
    "MSG005", "A library needs a newer C or C++ runtime than the one loaded", Severity.ERROR,
    """
    "version `GLIBCXX_3.4.30' not found (required by …)": a library was built with a newer
    compiler (libstdc++) or against a newer glibc than the one in use. Common with conda
    environments mixed with system libraries, and with wheels built on a newer distribution.

    **Fix.** Use the libstdc++ of the environment (conda: `conda install libstdcxx-ng`; or put
    the environment's `lib/` first), or install a build of the package made for this system.
    """,
    Stage.RUN,
)

declare(
    "MSG006", "A worker process died", Severity.ERROR,
    """
    A framework reported that one of its worker processes died: PyTorch's "DataLoader worker
    (pid N) is killed by signal", `concurrent.futures`' BrokenProcessPool, joblib/loky's
    TerminatedWorkerError. The message rarely says why; numdoctor looks for the worker's own
    crash dump (faulthandler runs in every worker) and the kernel's OOM records, and reports
    them as SIG/OOM findings naming the worker's pid.

    **Fix.** Follow the SIG or OOM finding for the worker. Without one, run with
    `num_workers=0` (or `n_jobs=1`) to get the error in the main process.
    """,
    Stage.RUN,
)

declare(
    "MSG007", "OpenBLAS was called from inside an OpenMP parallel region", Severity.WARNING,
    """
    "OpenBLAS Warning : Detect OpenMP Loop and this application may hang": a pthreads build of
    OpenBLAS (the one NumPy's and SciPy's wheels ship) was called from a thread of an OpenMP
    parallel region. Its own thread pool and the OpenMP team then wait for each other.

    **Fix.** Limit OpenBLAS to one thread inside parallel regions
    (`threadpoolctl.threadpool_limits(1, user_api="blas")`, or `OPENBLAS_NUM_THREADS=1`), or
    use an OpenMP build of OpenBLAS.
    """,
    Stage.RUN,
)

declare(
    "MSG008", "The OpenMP runtime reported an error", Severity.WARNING,
    """
    An "OMP: Error #N" message other than the duplicate-runtime error (#15, see OMP002) and the
    thread-creation errors (see THR001): an assertion in the runtime, an invalid setting in an
    `OMP_*`/`KMP_*` variable, or a runtime used in an unsupported way. The message itself is in
    the evidence.

    **Fix.** Check the `OMP_*`/`KMP_*` environment variables in the report, and that only one
    OpenMP runtime is loaded (`numdoctor check`).
    """,
    Stage.RUN,
)
