"""`numdoctor run -- CMD ARGS…`: run a program; if it hangs or crashes, say where and why."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from numdoctor.cli import UsageError
from numdoctor.render.formats import FORMATS

TYPE_CHECKING = False  # typing itself is not imported before the program starts
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run a program and explain its hang or crash",
        usage="numdoctor run [--hang-timeout S] [--spin-timeout S] [--timeout S] "
              "[--keep-running] [--report FILE] [--format text|json|markdown|html] "
              "-- CMD [ARGS...]",
        description="Run CMD with its output, input and exit status passed through. Quiet "
                    "when it succeeds. When it hangs, spins, runs past --timeout or crashes, "
                    "numdoctor dumps the Python and native stacks of every thread of every "
                    "process of the program, finds who waits for whom and the one place to "
                    "look, says which library is to blame and how to fix it, kills the whole "
                    "process tree and exits with 124 (hang, timeout, deadlock) or 128+N "
                    "(death by signal N), like a shell. A deadlock numdoctor can prove (a lock "
                    "cycle, a pool waiting for a dead worker, ranks in different collectives, "
                    "a forked child waiting for OpenMP threads) is reported within seconds, "
                    "without any timeout.",
    )
    parser.add_argument("--hang-timeout", type=float, metavar="S",
                        help="a program that writes no output, calls no numdoctor.heartbeat() "
                             "and uses no CPU for S seconds is hung: dump, kill, exit 124 "
                             "(default: off)")
    parser.add_argument("--spin-timeout", type=float, metavar="S",
                        help="the same for a program that keeps a CPU busy without output "
                             "(reported as spinning; default: --hang-timeout; 0: never)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="wall-clock limit: dump, kill and exit 124 after S seconds")
    parser.add_argument("--keep-running", action="store_true",
                        help="when numdoctor proves a deadlock, report it and leave the "
                             "program running (default: end it, exit 124)")
    parser.add_argument("--report", metavar="FILE",
                        help="write the full report to FILE (also after a success); on a "
                             "failure without --report it is saved in the temporary directory")
    parser.add_argument("--format", choices=FORMATS,
                        help="report format (default: from the FILE suffix, .json, .md or "
                             ".html, else text)")
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="CMD",
                        help="the program and its arguments (after --)")


def _validate(args: argparse.Namespace) -> list[str]:
    if not sys.platform.startswith("linux"):
        raise UsageError("numdoctor run: supported on Linux only (it relies on /proc, prctl "
                         "and ptrace)")
    command = list(args.program)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("numdoctor run: give the command to run, e.g. "
                         "numdoctor run -- python train.py")
    for name in ("hang_timeout", "spin_timeout", "timeout"):
        value = getattr(args, name)
        if value is not None and (value < 0 or value != value):
            raise UsageError(f"numdoctor run: --{name.replace('_', '-')} must be a number of "
                             "seconds >= 0")
    if args.hang_timeout == 0:
        args.hang_timeout = None
    if args.timeout == 0:
        args.timeout = None
    if args.report:
        directory = os.path.dirname(os.path.abspath(args.report))
        if not os.path.isdir(directory):
            raise UsageError(f"numdoctor run: --report {args.report!r}: directory "
                             f"{directory} does not exist")
    return command


def run(args: argparse.Namespace, *, start: Callable[..., Any] | None = None,
        proof_pace: float = 1.0) -> int:
    """`start` and `proof_pace`: see supervise.supervisor.Options (probe's fork server)."""
    from numdoctor.core.tree import CommandNotFound
    from numdoctor.supervise.supervisor import Options, supervise

    command = _validate(args)
    options = Options(command=command, hang_timeout=args.hang_timeout,
                      spin_timeout=args.spin_timeout, timeout=args.timeout,
                      report_always=bool(args.report), keep_running=args.keep_running,
                      on_report=lambda outcome: _tell(outcome, args), start=start,
                      proof_pace=proof_pace)
    try:
        outcome = supervise(options)
    except CommandNotFound as exc:
        print(f"numdoctor run: {exc}", file=sys.stderr)
        return exc.exit_code
    if outcome.leftovers:
        print(f"numdoctor: the program exited but left {len(outcome.leftovers)} process(es) "
              f"running; terminated: {', '.join(map(str, outcome.leftovers))}",
              file=sys.stderr)
    if outcome.report is not None:  # None: a success, and no report asked for
        _tell(outcome, args)
    return outcome.exit_code


def _tell(outcome, args: argparse.Namespace) -> None:
    """Write the report (--report, or a temporary file after a failure) and, after a
    failure, the few lines that say what happened on stderr."""
    from numdoctor.commands._common import write_report
    from numdoctor.render.formats import format_for

    fmt = args.format or format_for(args.report)
    failed = outcome.noteworthy
    path = args.report
    if path is None and failed:
        fmt = args.format or "markdown"
        suffix = {"json": ".json", "markdown": ".md", "html": ".html"}.get(fmt, ".txt")
        path = os.path.join(tempfile.gettempdir(), f"numdoctor-report-{os.getpid()}{suffix}")
    if path is not None:
        try:
            write_report(outcome.report, fmt, path, option="--report")
        except UsageError:
            if args.report:
                raise
            path = None
    if failed:
        from numdoctor.redact import redact_text
        from numdoctor.supervise.report import summary

        lines = summary(outcome.facts, path)
        try:
            sys.stderr.write("".join(redact_text(line) + "\n" for line in lines))
            sys.stderr.flush()
        except OSError:  # nobody reads our stderr any more; the exit status still counts
            pass
