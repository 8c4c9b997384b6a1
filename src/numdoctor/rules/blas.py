"""BLAS/LAPACK libraries: several copies or vendors in one process."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules._evidence import describe_library, packages
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.model import Snapshot


@rule("BLAS001", "Several BLAS/LAPACK implementations are loaded", Severity.WARNING)
def several_blas(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    More than one BLAS/LAPACK implementation is mapped into the process: copies of the same
    vendor (NumPy's and SciPy's wheels each vendor their own OpenBLAS) or different vendors
    (OpenBLAS next to MKL, or torch's statically linked MKL).

    Implementations are counted, not files: interface libraries with no code or pool of
    their own count with the implementation behind them — Debian/Ubuntu's `libblas.so.3` and
    `liblapack.so.3` chosen with update-alternatives, FlexiBLAS and its backend, reference
    LAPACK on top of a BLAS, conda's `libblas.so.3` symbolic link.

    **Why it matters.** Each implementation keeps its own thread pool sized to all CPUs, so
    their threads add up; `OPENBLAS_NUM_THREADS` or `threadpoolctl` limits applied through
    one framework may miss the others; and results can differ in the last bits depending on
    which library served a call. With `RTLD_GLOBAL` a call can even bind to the wrong
    library (see SYM001).

    **Fix.** Usually nothing breaks, but set one limit for all of them: `OMP_NUM_THREADS`
    (read by every vendor) or `threadpoolctl.threadpool_limits(n)`, which reaches every
    loaded copy. For a single BLAS, install NumPy and SciPy from one channel that shares a
    BLAS (conda-forge `libblas`, or the system's packages: `apt install python3-numpy
    python3-scipy` with one `libblas.so.3` alternative).
    """
    libs = snapshot.implementations("blas")
    evidence = [describe_library(lib, snapshot) for lib in libs]
    torch = snapshot.framework("torch")
    static = 0
    # torch's pip wheels link MKL statically: no MKL file is mapped, but it is a BLAS with
    # its own threads (torch's intra-op pool). A torch linked to a mapped BLAS has none.
    if torch and str(torch.details.get("blas_info", "")).lower() == "mkl" \
            and not torch.blas_libraries:
        static = 1
        threads = torch.details.get("num_threads")
        evidence.append(
            f"Intel MKL linked statically into torch {torch.version}"
            + (f" ({threads} threads, set by torch.set_num_threads)" if threads else "")
        )
    count = len(libs) + static
    if count < 2:
        return
    total = sum(lib.num_threads or 0 for lib in libs)
    if static and torch is not None:
        total += int(torch.details.get("num_threads") or 0)
    cpus = snapshot.system.effective_cpus
    vendors = sorted({lib.vendor for lib in libs} | ({"mkl (static, torch)"} if static else set()))
    title = f"{count} BLAS implementations are loaded ({', '.join(vendors)})"
    why = (
        f"Their pools total {total} threads on {cpus} effective CPU(s); a thread limit "
        "applied to one of them does not reach the others."
        if total
        else "Each keeps its own thread pool; limits applied to one do not reach the others."
    )
    owners = packages(libs, snapshot) + (", torch" if static else "")
    yield rule.finding(
        evidence,
        title=title,
        why=why,
        fix=(
            "Limit all pools at once with OMP_NUM_THREADS (or threadpoolctl.threadpool_limits), "
            f"or install {owners} from one channel that shares one BLAS."
        ),
        severity=Severity.WARNING if cpus is None or total > cpus else Severity.INFO,
    )
