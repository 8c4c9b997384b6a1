"""What went wrong while numdoctor gathered the facts: imports that failed, hung or crashed."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Rule, Stage, declare, rule
from numdoctor.snapshot.model import Snapshot

declare(
    "ND000", "A numdoctor rule failed", Severity.WARNING,
    """
    A rule raised an exception on this snapshot. The other rules still ran. This is a bug in
    numdoctor: please report it with the JSON report (`--format json`).
    """,
    Stage.CHECK,
)


def _attempts(snapshot: Snapshot, status: str):
    return [a for a in snapshot.imports if a.status == status]


def _evidence(attempt) -> list[str]:
    lines = [f"import {attempt.module} ({attempt.seconds:.1f} s): {attempt.detail}"]
    if attempt.traceback:
        lines.append(attempt.traceback.rstrip())
    return lines


@rule("IMP001", "Importing a module raised an exception", Severity.ERROR)
def import_raised(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A module named in `--import` (or a known framework) raised while being imported in the
    collector's subprocess. The traceback is in the evidence. Typical causes: a binary built
    for another NumPy (see ABI001), a missing shared library, a CUDA/driver mismatch.

    **Fix.** Read the last line of the traceback; reinstall the package named there.
    """
    for attempt in _attempts(snapshot, "error"):
        yield rule.finding(
            _evidence(attempt), title=f"import {attempt.module} raised",
            fix=f"Reinstall or upgrade the package that provides {attempt.module}, "
                "or the one named in the traceback's last line.",
        )


@rule("IMP002", "Importing a module hung", Severity.ERROR)
def import_hung(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    Importing a module did not finish within the time limit. The all-thread stack dump taken
    before the subprocess was killed is in the evidence. Imports hang on locks taken by a
    runtime's initialiser, on network file systems, or on a GPU driver that does not answer.

    **Fix.** The innermost frames of the dump name the library that was waiting; import that
    module alone (`numdoctor check --import MOD`) to confirm, then see `numdoctor probe`.
    """
    for attempt in _attempts(snapshot, "hang"):
        yield rule.finding(
            _evidence(attempt), title=f"import {attempt.module} hung",
            fix=f"Run `numdoctor probe --import {attempt.module}` to find which import order "
                "or setting avoids it.",
        )


@rule("IMP003", "Importing a module crashed the process", Severity.ERROR)
def import_crashed(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    The collector's subprocess died (a signal such as SIGSEGV or SIGABRT) while importing a
    module. numdoctor itself was not affected; the other modules were collected in a fresh
    subprocess. The faulthandler traceback and the end of stderr are in the evidence: an "OMP:
    Error #15" there means a duplicate Intel OpenMP runtime (OMP002).

    **Fix.** Import the module alone to confirm; then check OMP001/OMP002 and ABI findings.
    """
    for attempt in _attempts(snapshot, "crash"):
        yield rule.finding(
            _evidence(attempt), title=f"import {attempt.module} crashed the process",
            fix=f"Import {attempt.module} alone to confirm, then follow the OpenMP/ABI "
                "findings; the stderr lines above usually name the library.",
        )


@rule("IMP004", "A requested module is not installed", Severity.WARNING)
def import_missing(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A module named with `--import` is not installed in this environment, so the check ran
    without it.

    **Fix.** Check the spelling (import names differ from package names: `sklearn` is
    `scikit-learn`), or install it.
    """
    for attempt in _attempts(snapshot, "missing"):
        yield rule.finding(
            [f"import {attempt.module}: {attempt.detail}"],
            title=f"module {attempt.module} is not installed",
            fix=f"pip install the package that provides {attempt.module}, or drop it from "
                "--import.",
        )
