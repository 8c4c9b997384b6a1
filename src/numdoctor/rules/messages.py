"""The knowledge base of messages: what the numerical stack prints on stderr before it dies.

Each entry recognises one message ("OMP: Error #15", "CUBLAS_STATUS_…", glibc's heap checks,
NumPy's ABI errors…) and turns it into a finding. Where `check` knows the same cause, the same
code is used (OMP002, MKL001, THR001), so one explanation serves both.

Scanning is built for volume: every chunk the output relay copies goes through one compiled
keyword regex (C speed); only lines that contain a keyword are looked at in Python. A few
lines after a match are kept as context (a C++ exception's `what()`), and each kind of
message is recorded at most a few times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache

from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Rule, Stage, declare

GPU002 = declare(
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

GPU003 = declare(
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

GPU004 = declare(
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

GPU005 = declare(
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

MSG001 = declare(
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

MSG002 = declare(
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

MSG003 = declare(
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

MSG004 = declare(
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

MSG005 = declare(
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

MSG006 = declare(
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

MSG007 = declare(
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

MSG008 = declare(
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


_MAX_HITS = 3  # occurrences kept per message kind
_CONTEXT = 4  # lines kept after a matching line
_LINE_LIMIT = 2000  # characters kept of one line

_KEYWORD_ALTERNATIVES = (
    rb"OMP: Error|OMP: System error|MKL_THREADING_LAYER|pthread_create failed|Detect OpenMP "
    rb"Loop|cuSolver|cusolver|CUSOLVER|CUBLAS_STATUS|CUDA out of memory|CUDA error|"
    rb"cudaError|OutOfMemoryError|out of memory|device-side assert|illegal memory access|"
    rb"no kernel image|is not compatible with the current PyTorch|terminate called|"
    rb"compiled using NumPy 1|_ARRAY_API not found|multiarray failed to import|"
    rb"_multiarray_umath failed to import|compiled against|C-API version|dtype size changed|"
    rb"built with baseline optimizations|free\(\)|double free|malloc\(\)|malloc_consolidate|"
    rb"realloc\(\)|munmap_chunk|corrupted size|corrupted double-linked|undefined symbol|"
    rb"' not found \(required by|DataLoader worker|terminated abruptly|BrokenProcessPool|"
    rb"TerminatedWorkerError|unexpectedly terminated|Segmentation fault|Illegal instruction|"
    rb"Bus error|Floating point exception|Aborted|Killed|Detected mismatch between collectives|"
    rb"Timed out waiting|Watchdog caught collective|failed to pass monitoredBarrier|"
    rb"clients joined|wait timeout after|DataLoader timed out|NumPy module was reloaded")


# Compiled on first use: `check` imports this module with the other rules, and never scans.
@cache
def _keywords() -> re.Pattern[bytes]:
    return re.compile(_KEYWORD_ALTERNATIVES)


@dataclass(frozen=True)
class Entry:
    """A kind of message and the pattern that recognises its lines."""

    key: str
    pattern: re.Pattern[str]


_ENTRY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("omp15", r"OMP: Error #15: Initializing (?P<lib>\S+?),? but found (?P<other>\S+?) "
              r"already initiali[sz]ed"),
    ("omp_threads", r"OMP: (?:Error #(?:34|179)|System error #11)[^\n]*|"
                    r"pthread_create failed for thread (?P<n>\d+) of (?P<of>\d+)[^\n]*|"
                    r"pthread_create failed[^\n]*Resource temporarily unavailable"),
    ("omp_other", r"OMP: Error #(?P<num>\d+): (?P<text>.*)"),
    ("mkl_layer", r"MKL_THREADING_LAYER=INTEL is incompatible with libgomp"),
    ("openblas_omp", r"OpenBLAS Warning : Detect OpenMP Loop"),
    ("cusolver", r"(?:cuSolverDN|cusolver\w*|CUSOLVER)[^\n]*?(?:failed|error|"
                 r"CUSOLVER_STATUS_(?P<status>\w+))|CUSOLVER_STATUS_(?P<status2>\w+)"),
    ("cublas", r"CUBLAS_STATUS_(?P<status>[A-Z_]+)"),
    ("cuda_oom", r"CUDA out of memory|CUDA error: out of memory|cudaErrorMemoryAllocation|"
                 r"torch\.(?:cuda\.)?OutOfMemoryError|RESOURCE_EXHAUSTED: Out of memory"),
    ("cuda_fault", r"an illegal memory access was encountered|device-side assert triggered|"
                   r"unspecified launch failure|misaligned address|cudaErrorIllegalAddress"),
    ("cuda_arch", r"no kernel image is available for execution on the device|"
                  r"(?P<arch>sm_\d+) is not compatible with the current PyTorch installation"),
    ("terminate", r"terminate called after throwing an instance of '(?P<type>[^']+)'"),
    ("numpy1_on_2", r"A module that was compiled using NumPy 1\.x cannot be run in|"
                    r"_ARRAY_API not found|numpy\.core\.multiarray failed to import|"
                    r"numpy\.core\._multiarray_umath failed to import|"
                    r"dtype size changed, may indicate binary incompatibility\. Expected 88 "
                    r"from C header, got 96"),
    ("numpy_abi", r"compiled against ABI version (?P<built>0x[0-9a-fA-F]+) but this version "
                  r"of numpy is (?P<running>0x[0-9a-fA-F]+)"),
    ("numpy_newer", r"compiled against (?:NumPy |numpy )?(?:C-)?API version "
                    r"(?P<built>0x[0-9a-fA-F]+)(?: \([^)]*\))? but (?:this version of numpy "
                    r"is|the running NumPy has C-API version) (?P<running>0x[0-9a-fA-F]+)|"
                    r"dtype size changed, may indicate binary incompatibility\. Expected 96 "
                    r"from C header, got 88"),
    ("numpy_baseline", r"NumPy was built with baseline optimizations"),
    ("heap", r"(?P<what>free\(\): invalid (?:pointer|size|next size \(\w+\))|double free or "
             r"corruption(?: \(\w+\))?|malloc\(\): [\w ]*corrupt[\w ]*|malloc_consolidate\(\): "
             r"[\w ]+|munmap_chunk\(\): invalid pointer|corrupted size vs\. prev_size|"
             r"corrupted double-linked list|realloc\(\): invalid [\w ]+|free\(\): double free "
             r"detected[\w ]*)"),
    ("undefined_symbol", r"(?P<lib>/\S+\.so[\w.]*): undefined symbol: (?P<symbol>\S+)|"
                         r"undefined symbol: (?P<symbol2>\S+)"),
    ("version_not_found", r"version `(?P<version>[A-Z+]+_[\d.]+)' not found \(required by "
                          r"(?P<by>[^)]+)\)"),
    # Hangs that the frameworks end themselves (a timeout) or report: the same codes as the
    # hang analysis (numdoctor.rules.hangs).
    ("dist_mismatch", r"Detected mismatch between collectives on ranks"),
    ("dist_timeout", r"Timed out waiting (?P<ms>\d+)ms for (?P<op>recv|send) operation to "
                     r"complete|Watchdog caught collective operation timeout: "
                     r"(?P<work>WorkNCCL\(.*?\)) ran for (?P<ran>\d+) milliseconds|"
                     r"Rank (?P<rank>\d+) failed to pass monitoredBarrier in (?P<barrier>\d+) "
                     r"ms|Timed out after (?P<seconds>\d+) seconds waiting for clients\. "
                     r"(?P<joined>\d+)/(?P<total>\d+) clients joined|wait timeout after "
                     r"(?P<wait>\d+)ms, keys: (?P<keys>\S+)"),
    ("dataloader_timeout", r"DataLoader timed out after (?P<seconds>\d+) seconds"),
    ("dataloader_worker_died", r"DataLoader worker \(pid(?:\(s\))? (?P<pids>[\d, ]+)\) "
                               r"(?:is killed by signal: (?P<signal>[^.\n]+)|exited "
                               r"unexpectedly(?: with exit code (?P<code>-?\d+))?)"),
    ("numpy_reloaded", r"The NumPy module was reloaded \(imported a second time\)"),
    ("worker_died", r"DataLoader worker \(pid(?:\(s\))? (?P<pids>[\d, ]+)\) (?:is killed by "
                    r"signal: (?P<signal>[^.\n]+)|exited unexpectedly)|A process in the "
                    r"process pool was terminated abruptly|BrokenProcessPool|"
                    r"TerminatedWorkerError|worker process managed by the executor was "
                    r"unexpectedly terminated"),
    ("shell_signal", r"(?:^|\s)(?P<pid>\d+)\s+(?P<what>Segmentation fault|Illegal instruction|"
                     r"Bus error|Floating point exception|Aborted|Killed)(?: \(core dumped\))?"),
)


@cache
def entries() -> tuple[Entry, ...]:
    """The compiled knowledge base, built on the first line that mentions a keyword."""
    return tuple(Entry(key, re.compile(pattern)) for key, pattern in _ENTRY_PATTERNS)


@dataclass
class Hit:
    """One recognised line of output, with the lines that followed it."""

    key: str
    line: str
    match: dict[str, str]
    context: list[str] = field(default_factory=list)
    count: int = 1


class MessageScanner:
    """Feed it bytes as they pass; read `hits` at the end."""

    def __init__(self) -> None:
        self.hits: dict[str, list[Hit]] = {}
        self._carry = b""
        self._awaiting: list[Hit] = []  # hits still collecting context lines

    def feed(self, data: bytes) -> None:
        if self._carry:
            data = self._carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < 65536:
            self._carry = data
            return
        if cut == 0:
            cut = len(data)
        complete, self._carry = data[:cut], data[cut:]
        self._scan(complete)

    def finish(self) -> None:
        if self._carry:
            self._scan(self._carry + b"\n")
            self._carry = b""
        self._awaiting = []

    def _scan(self, block: bytes) -> None:
        if self._awaiting:
            self._add_context(block)
        position = 0
        for match in _keywords().finditer(block):
            if match.start() < position:
                continue  # same line as a keyword already handled
            start = block.rfind(b"\n", 0, match.start()) + 1
            end = block.find(b"\n", match.end())
            end = len(block) if end < 0 else end
            position = end
            line = block[start:end].decode("utf-8", "replace")[:_LINE_LIMIT]
            hit = self._classify(line)
            if hit is not None:
                self._add_context(block[end + 1:], only=hit)

    def _classify(self, line: str) -> Hit | None:
        for entry in entries():
            found = entry.pattern.search(line)
            if not found:
                continue
            hits = self.hits.setdefault(entry.key, [])
            for hit in hits:
                if hit.line == line:
                    hit.count += 1
                    return None
            if len(hits) >= _MAX_HITS:
                hits[-1].count += 1
                return None
            hit = Hit(entry.key, line.strip(),
                      {k: v for k, v in found.groupdict().items() if v is not None})
            hits.append(hit)
            self._awaiting.append(hit)
            return hit
        return None

    def _add_context(self, block: bytes, only: Hit | None = None) -> None:
        waiting = [only] if only is not None else self._awaiting
        lines = block.split(b"\n", _CONTEXT)[:_CONTEXT]
        for hit in waiting:
            for raw in lines:
                if len(hit.context) >= _CONTEXT:
                    break
                text = raw.decode("utf-8", "replace").rstrip()[:_LINE_LIMIT]
                if text:
                    hit.context.append(text)
        self._awaiting = [h for h in self._awaiting if len(h.context) < _CONTEXT]

    def scan_all(self, data: bytes) -> None:
        """Scan a complete block (an inherited stderr file read after the run)."""
        self.feed(data)
        self.finish()


# -- from hits to findings -------------------------------------------------------------------

@dataclass
class Context:
    """Facts the knowledge base uses to make its findings precise."""

    openmp_libraries: list[str] = field(default_factory=list)  # describe_library() lines
    cpu_flags: set[str] = field(default_factory=set)
    main_pid: int = 0
    # The package that ships a file ("torch 2.13.0"), looked up by the caller that collected
    # the output (the diagnoses never look files up themselves).
    owner: Callable[[str], str] = field(default=lambda path: "")


def _evidence(hits: list[Hit], extra: Iterable[str] = ()) -> list[str]:
    lines = []
    for hit in hits:
        repeat = f" (seen {hit.count} times)" if hit.count > 1 else ""
        lines.append(f"stderr: {hit.line}{repeat}")
        lines.extend(f"    {c}" for c in hit.context[:2])
    lines.extend(extra)
    return lines


def _declared(module: str, name: str) -> Rule:
    """A code declared by the module whose diagnosis the message confirms (imported when a
    message needs it)."""
    import importlib

    rule_: Rule = getattr(importlib.import_module(f"numdoctor.rules.{module}"), name)
    return rule_


def _check_rule(module: str, check: str) -> Rule:
    """The Rule of a `check` rule with the same cause (imported when a message needs it: the
    scanner itself runs from the start of a supervised program and must stay light)."""
    import importlib

    rule_: Rule = getattr(importlib.import_module(f"numdoctor.rules.{module}"), check).rule
    return rule_

_CUBLAS_CAUSES = {
    "NOT_INITIALIZED": "cuBLAS could not create its handle: almost always the GPU was out of "
                       "memory at that moment, or the CUDA context was broken by an earlier "
                       "error",
    "ALLOC_FAILED": "cuBLAS could not allocate GPU memory: the GPU is out of memory",
    "EXECUTION_FAILED": "a cuBLAS kernel failed to run; often the report of an earlier "
                        "asynchronous error (run with CUDA_LAUNCH_BLOCKING=1 to find it)",
    "INVALID_VALUE": "a cuBLAS call got an invalid argument (shape, stride, leading "
                     "dimension or a size above 2^31)",
    "ARCH_MISMATCH": "the GPU is too old for the cuBLAS routine this build uses",
    "NOT_SUPPORTED": "the operation is not supported for this data type or GPU",
    "INTERNAL_ERROR": "cuBLAS failed internally; often after running out of GPU memory",
    "MAPPING_ERROR": "cuBLAS could not access GPU memory (texture binding failed)",
}


def _omp15(hits, ctx):
    hit = hits[0]
    return [_check_rule("openmp", "duplicate_openmp_copies").finding(
        _evidence(hits, ctx.openmp_libraries),
        severity=Severity.ERROR,
        title="Two copies of Intel OpenMP initialised: the program aborted (OMP Error #15)",
        why=f"A second {hit.match.get('lib', 'libiomp5')} started while one was already "
            "running; Intel's runtime aborts rather than risk wrong results.",
        fix="Load one copy of libiomp5: install the packages that bring it from one channel "
            "(all pip or all conda), or LD_PRELOAD the one you want. Do not set "
            "KMP_DUPLICATE_LIB_OK=TRUE: it hides the conflict and trades the abort for hangs "
            "and wrong results.",
    )]


def _omp_threads(hits, ctx):
    return [_check_rule("threads", "oversubscription").finding(
        _evidence(hits), severity=Severity.ERROR,
        title="A thread pool could not create its threads",
        why="pthread_create failed: the process (or its container's pids limit, or "
            "`ulimit -u`) ran out of threads, usually because every pool starts one thread "
            "per host CPU in every worker process.",
        fix="Limit the pools: OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS = the "
            "effective CPUs divided by the number of worker processes; check `ulimit -u` and "
            "the container's pids.max.",
    )]


def _omp_other(hits, ctx):
    hit = hits[0]
    return [MSG008.finding(
        _evidence(hits),
        title=f"The OpenMP runtime reported error #{hit.match.get('num', '?')}",
        why=hit.match.get("text", ""),
    )]


def _mkl_layer(hits, ctx):
    return [_check_rule("mkl", "mkl_threading_layer").finding(
        _evidence(hits, ctx.openmp_libraries),
        why="MKL refused to start with its Intel threading layer next to GNU libgomp.",
        fix="export MKL_THREADING_LAYER=GNU before starting the program.",
    )]


def _openblas_omp(hits, ctx):
    return [MSG007.finding(_evidence(hits, ctx.openmp_libraries))]


def _cusolver(hits, ctx):
    status = hits[0].match.get("status") or hits[0].match.get("status2") or ""
    return [GPU002.finding(
        _evidence(hits),
        title="A cuSOLVER call failed" + (f" (CUSOLVER_STATUS_{status})" if status else ""),
        why="cuSOLVER (GPU LAPACK: torch.linalg on CUDA, cupy.linalg) failed. Ill-conditioned "
            "or non-finite input, a batch too large for GPU memory, or a cuSOLVER version "
            "mismatch with the driver are the usual causes.",
    )]


def _cublas(hits, ctx):
    status = hits[0].match.get("status", "")
    cause = _CUBLAS_CAUSES.get(status, "a cuBLAS call failed")
    return [GPU002.finding(_evidence(hits), title=f"cuBLAS failed: CUBLAS_STATUS_{status}",
                                  why=cause[0].upper() + cause[1:] + ".")]


def _simple(rule_: Rule) -> Callable[[list[Hit], Context], list[Finding]]:
    def build(hits: list[Hit], ctx: Context) -> list[Finding]:
        return [rule_.finding(_evidence(hits))]
    return build


def _cuda_arch(hits, ctx):
    arch = hits[0].match.get("arch")
    return [GPU005.finding(
        _evidence(hits),
        why=(f"This GPU ({arch}) is not among the architectures the installed build was "
             "compiled for." if arch else None) or "",
    )]


def _terminate(hits, ctx):
    kind = hits[0].match.get("type", "")
    torch = kind.startswith("c10::")
    return [MSG001.finding(
        _evidence(hits),
        title=(f"PyTorch's C++ code threw {kind} and nothing caught it" if torch else
               f"A C++ exception ({kind}) escaped to std::terminate"),
        why=("A c10::Error thrown where it cannot become a Python exception (a destructor, "
             "a background thread, a DataLoader worker's C++ side) ends the process with "
             "SIGABRT; the what() text after the message says what failed."
             if torch else ""),
    )]


def _numpy1_on_2(hits, ctx):
    return [_check_rule("binary", "built_for_numpy1").finding(_evidence(hits), where="stderr")]


def _numpy_newer(hits, ctx):
    return [_check_rule("binary", "needs_newer_numpy").finding(_evidence(hits),
                                                             where="stderr")]


def _numpy_abi(hits, ctx):
    # NPY_ABI_VERSION: 0x01000009 for NumPy 1.x, 0x02000000 for 2.x.
    match = hits[0].match
    try:
        older_build = int(match["built"], 16) < int(match["running"], 16)
    except (KeyError, ValueError):
        older_build = True
    check = "built_for_numpy1" if older_build else "needs_newer_numpy"
    return [_check_rule("binary", check).finding(_evidence(hits), where="stderr")]


def _numpy_baseline(hits, ctx):
    from numdoctor.core import isa

    flags = ctx.cpu_flags
    return [MSG003.finding(
        _evidence(hits, [f"this CPU: {isa.level(flags)}; lacks "
                         f"{', '.join(isa.missing_above(flags)[:8]) or 'nothing checked'}"]),
        title="NumPy was built for CPU features this machine lacks",
    )]


def _heap(hits, ctx):
    return [MSG002.finding(
        _evidence(hits), title=f"glibc detected heap corruption: {hits[0].match.get('what')}")]


def _undefined_symbol(hits, ctx):
    hit = hits[0]
    symbol = hit.match.get("symbol") or hit.match.get("symbol2") or "?"
    library = hit.match.get("lib", "")
    owner = ctx.owner(library) if library else ""
    evidence = _evidence(hits, [f"{library} is from {owner}"] if owner else [])
    return [MSG004.finding(
        evidence, title=f"A compiled module needs symbol {symbol}, which nothing loaded has")]


def _version_not_found(hits, ctx):
    hit = hits[0]
    return [MSG005.finding(
        _evidence(hits),
        title=f"{hit.match.get('by', 'A library')} needs {hit.match.get('version')}, which "
              "the loaded C/C++ runtime lacks")]


def _worker_died(hits, ctx):
    return [MSG006.finding(_evidence(hits))]


_OP_TYPE = re.compile(r"OpType=(\w+)")


def _dist_mismatch(hits, ctx):
    ops = _OP_TYPE.findall(" ".join([hits[0].line, *hits[0].context]))
    ranks = re.findall(r"Rank (\d+) is running collective", hits[0].line)
    detail = ""
    if len(ops) >= 2 and len(ranks) >= 2:
        detail = f": rank {ranks[0]} runs {ops[0]}, rank {ranks[1]} runs {ops[1]}"
    return [_declared("hangs.collectives", "MISMATCH").finding(
        _evidence(hits),
        title="torch.distributed detected a mismatch between collectives" + detail,
        why="TORCH_DISTRIBUTED_DEBUG=DETAIL compared the ranks' collectives before running "
            "them: they differ, so without the check the job would have hung.")]


def _dist_timeout(hits, ctx):
    match = hits[0].match
    if match.get("rank"):
        title = (f"Rank {match['rank']} did not reach monitored_barrier within "
                 f"{int(match['barrier']) / 1000:g} s")
    elif match.get("joined"):
        title = (f"The process group timed out: {match['joined']} of {match['total']} ranks "
                 f"joined within {match['seconds']} s")
    elif match.get("work"):
        title = (f"An NCCL collective timed out after {int(match['ran']) / 1000:g} s: "
                 "a rank never arrived, or the ranks called different collectives")
    elif match.get("wait"):
        title = (f"Waiting for other ranks in the store timed out after "
                 f"{int(match['wait']) / 1000:g} s (keys {match['keys']})")
    else:
        title = (f"A gloo collective timed out after {int(match.get('ms', 0)) / 1000:g} s "
                 f"waiting to {match.get('op', 'recv')}: a rank never arrived, or the ranks "
                 "called different collectives")
    return [_declared("hangs.collectives", "MISSING").finding(
        _evidence(hits), title=title,
        why="A collective (or the rendezvous) waits for every rank; the backend's timeout "
            "ended the wait. Run with TORCH_DISTRIBUTED_DEBUG=DETAIL to see whether the "
            "ranks called different collectives (HANG009).")]


def _dataloader_timeout(hits, ctx):
    seconds = hits[0].match.get("seconds", "?")
    return [_declared("hangs.dataloader", "RULE").finding(
        _evidence(hits),
        title=f"A DataLoader worker delivered nothing for {seconds} s (DataLoader timeout)",
        why="DataLoader(timeout=...) turned a stuck worker into an error: the dataset's code "
            "in a worker (__getitem__, __iter__, collate_fn) blocked or took too long.")]


def _dataloader_worker_died(hits, ctx):
    match = hits[0].match
    pids = match.get("pids", "?").strip()
    how = (f"was killed by signal: {match['signal']}" if match.get("signal") else
           f"exited with code {match['code']}" if match.get("code") else
           "exited unexpectedly")
    return [_declared("hangs.pools", "RULE").finding(
        _evidence(hits), title=f"DataLoader worker (pid {pids}) {how}",
        why="A DataLoader worker died with the batch it was preparing; torch noticed and "
            "raised instead of waiting for it.",
        fix="Find why the worker died: an OOM kill (OOM001; fewer workers or less memory per "
            "worker), a crash in native code (SIG findings), or /dev/shm too small (SIG003). "
            "num_workers=0 runs the dataset in the main process with a full traceback.")]


def _numpy_reloaded(hits, ctx):
    return [_check_rule("binary", "module_reloaded").finding(
        _evidence(hits), title="NumPy was imported a second time in this process")]


_BUILDERS: dict[str, Callable[[list[Hit], Context], list[Finding]]] = {
    "omp15": _omp15,
    "omp_threads": _omp_threads,
    "omp_other": _omp_other,
    "mkl_layer": _mkl_layer,
    "openblas_omp": _openblas_omp,
    "cusolver": _cusolver,
    "cublas": _cublas,
    "cuda_oom": _simple(GPU003),
    "cuda_fault": _simple(GPU004),
    "cuda_arch": _cuda_arch,
    "terminate": _terminate,
    "numpy1_on_2": _numpy1_on_2,
    "numpy_newer": _numpy_newer,
    "numpy_abi": _numpy_abi,
    "numpy_baseline": _numpy_baseline,
    "heap": _heap,
    "undefined_symbol": _undefined_symbol,
    "version_not_found": _version_not_found,
    "worker_died": _worker_died,
    "dist_mismatch": _dist_mismatch,
    "dist_timeout": _dist_timeout,
    "dataloader_timeout": _dataloader_timeout,
    "dataloader_worker_died": _dataloader_worker_died,
    "numpy_reloaded": _numpy_reloaded,
}


def findings(hits: dict[str, list[Hit]], ctx: Context) -> list[Finding]:
    """Findings for every recognised message (shell-reported deaths are handled by the
    crash classifier, which knows the pids)."""
    found = []
    for key, builder in _BUILDERS.items():
        if hits.get(key):
            found.extend(builder(hits[key], ctx))
    return found


def shell_deaths(hits: dict[str, list[Hit]]) -> list[tuple[int, str, str]]:
    """(pid, what, line) for "1234 Segmentation fault" lines a shell printed."""
    deaths = []
    for hit in hits.get("shell_signal", []):
        try:
            deaths.append((int(hit.match["pid"]), hit.match["what"], hit.line))
        except (KeyError, ValueError):
            continue
    return deaths
