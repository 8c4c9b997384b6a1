"""What went wrong while numdoctor gathered the facts: imports that failed, hung or crashed,
collection steps that raised, an interpreter with nothing to check."""

from __future__ import annotations

from collections.abc import Iterator

from numdoctor._version import __version__
from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Rule, Stage, declare, rule
from numdoctor.snapshot.known import KNOWN_FRAMEWORKS
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


@rule("ND001", "A collection step failed", Severity.WARNING)
def collection_step_failed(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    One step of collecting the facts raised an unexpected exception: reading an owner, a
    library's linkage, the machine's cgroup, a framework's settings. The step is named with
    the exception and where it was raised; every other step ran, so the rest of the report
    is complete, but the facts this step would have added are missing (and a rule that needs
    them may have stayed silent).

    This is a bug in numdoctor, usually an environment it did not expect (an odd `sys.path`
    entry, a broken package database, an unreadable file).

    **Fix.** Please report it, with the JSON report (`numdoctor check --format json`) and
    the numdoctor version, at the numdoctor issue tracker.
    """
    for error in snapshot.collection_errors:
        evidence = [f"step: {error.step}", f"error: {error.error}"]
        if error.where:
            evidence.append(f"raised at: {error.where}")
        evidence.append(f"numdoctor {__version__}")
        yield rule.finding(
            evidence,
            title=f"numdoctor could not collect the {error.step}",
            why="The facts of this step are missing from the report; the other steps ran "
                "and their facts are complete.",
            fix=f"Please report this at the numdoctor issue tracker, naming numdoctor "
                f"{__version__} and attaching the JSON report (`numdoctor check --format "
                "json`).",
        )


@rule("IMP005", "No numerical framework is installed in this interpreter", Severity.INFO)
def nothing_to_import(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    `numdoctor check` without `--import` imports the numerical frameworks it knows that are
    installed for the Python running it. None is, so nothing was imported and the report
    only describes the bare interpreter: "no problems" here says nothing about your program.

    The usual cause is running numdoctor with another interpreter than the program's: a
    numdoctor installed with pipx or into another virtual environment checks that
    environment.

    **Fix.** Run numdoctor with the program's own interpreter (`/path/to/python -m
    numdoctor check`, after `pip install numdoctor` there), or name the modules to import
    with `--import`.
    """
    if snapshot.import_set != "default" or snapshot.imports:
        return
    python = snapshot.system.python_executable or "this Python"
    yield rule.finding(
        [f"interpreter: {python}",
         "none of " + ", ".join(KNOWN_FRAMEWORKS) + " can be imported there"],
        title=f"Nothing was imported: no numerical framework is installed for {python}",
        why="The report describes an interpreter without NumPy, SciPy, PyTorch or "
            "TensorFlow, not your program's environment.",
        fix="Run `python -m numdoctor check` with the interpreter of your program (install "
            "numdoctor there), or name modules with --import.",
    )
