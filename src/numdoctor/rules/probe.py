"""Codes that `numdoctor probe` emits for its scenario outcomes."""

from numdoctor.findings import Severity
from numdoctor.rules.registry import Stage, declare

declare("PRB001", "An operation hangs in a probe scenario", Severity.ERROR, """
    In at least one combination of import order, threading environment and process mode the
    operation made no progress (no output, no CPU) until the probe's hang timeout, and was
    killed. The evidence gives the smallest failing combination found, the stacks the
    supervisor took before killing it, and each mitigation that was re-run with its result.

    **Fix.** Apply a mitigation marked "passes (verified)"; the standalone script in the report
    reproduces the hang for a bug report.
    """, Stage.PROBE)
declare("PRB002", "An operation crashes in a probe scenario", Severity.ERROR, """
    The scenario's process (or its forked child or worker) died from a signal, e.g. SIGSEGV
    or SIGABRT ("OMP: Error #15"). The evidence gives the smallest failing combination, the
    signal, the library the supervisor blamed and each mitigation re-run with its result.

    **Fix.** Apply a mitigation marked "passes (verified)"; attach the standalone script to
    the bug report of the library named.
    """, Stage.PROBE)
declare("PRB003", "An operation raises an error in a probe scenario", Severity.ERROR, """
    The scenario exited with an error instead of completing: an exception in the operation,
    a failed import in that order, or a worker that exited non-zero.

    **Fix.** Read the error line in the evidence; run the standalone script to see the full
    traceback.
    """, Stage.PROBE)
declare("PRB004", "An operation is much slower after other imports", Severity.WARNING, """
    The operation completed, but took at least 3x (and 0.5 s more than) its time when run
    alone in a fresh interpreter. Typical causes: oversubscribed thread pools (two OpenMP
    runtimes, or several BLAS pools sized to all cores) started by the other modules.

    **Fix.** Limit threads (OMP_NUM_THREADS) or see `numdoctor check --import` with the same
    modules for the conflicting runtimes.
    """, Stage.PROBE)
declare("PRB005", "A requested module is not installed", Severity.INFO, """
    A module named with `--import` is not installed, so no scenario includes it.

    **Fix.** Install it, or drop it from `--import`.
    """, Stage.PROBE)
