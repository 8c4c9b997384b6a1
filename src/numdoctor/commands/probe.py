"""`numdoctor probe`: run every combination in its own supervised subprocess."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from numdoctor.commands._options import FAIL_ON, add_output_options
from numdoctor.commands._progress import StderrProgress

if TYPE_CHECKING:
    from numdoctor.probe import ProbeOptions


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "probe", help="reproduce import-order and fork hangs in isolation, verify fixes",
        description="Run each operation after each import order, threading environment and "
                    "process mode in its own subprocess under the `numdoctor run` supervisor; "
                    "for each failure, find the smallest failing combination and re-run it "
                    "with each mitigation.")
    parser.add_argument("--import", dest="imports", metavar="MODS",
                        help="comma-separated modules (default: the known frameworks that "
                             "are installed)")
    parser.add_argument("--op", dest="ops", metavar="OPS",
                        help="comma-separated operations, e.g. numpy.svd,torch.mm (default: "
                             "every operation of the imported frameworks); --list-ops lists "
                             "them")
    parser.add_argument("--list-ops", action="store_true", help="list the operations and exit")
    parser.add_argument("--orders", choices=("all", "given"), default="all",
                        help="all permutations (a covering set beyond 4 modules) or only the "
                             "order given (default: all)")
    parser.add_argument("--fork", action="store_true",
                        help="also run each operation in the parent and then after os.fork() "
                             "and in multiprocessing workers (fork, spawn, forkserver)")
    parser.add_argument("--mode", dest="modes", metavar="MODES",
                        help="comma-separated process modes instead of --fork's set: "
                             "inprocess, fork, mp-fork, mp-spawn, mp-forkserver")
    parser.add_argument("--env", action="append", default=[], metavar="K=V",
                        help="an extra threading environment to try (repeatable); the default "
                             "and OMP_NUM_THREADS=1 are always tried")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="hard limit per scenario (default: 60)")
    parser.add_argument("--hang-timeout", type=float, default=5.0, metavar="S",
                        help="no output and no CPU for S seconds is a hang (default: 5)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="scenarios that use the CPUs at once; one whose program has gone "
                             "idle lets the next start (default: the effective CPU count)")
    parser.add_argument("--budget", type=float, default=None, metavar="S",
                        help="stop starting scenarios after S seconds in all")
    parser.add_argument("--fresh", action="store_true",
                        help="run every scenario in a fresh interpreter instead of forking it "
                             "from one that imported its modules (slower; for a module whose "
                             "import starts threads that the scenario needs)")
    parser.add_argument("--no-minimize", action="store_true",
                        help="report failures without minimising them or trying mitigations")
    parser.add_argument("--fail-on", choices=FAIL_ON, default="error",
                        help="exit 1 when a finding is at least this severe (default: error)")
    add_output_options(parser)


def _effective_cpus() -> int:
    from numdoctor.snapshot.system import effective_cpus, read_cgroup

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return effective_cpus(os.cpu_count(), affinity, read_cgroup().cpu_quota) or 1


def options_from_args(args: argparse.Namespace, modules: list[str], *, jobs: int,
                      fail: Callable[[str], Exception]) -> ProbeOptions:
    """Validated ProbeOptions from this subcommand's parsed arguments.

    Shared with `numdoctor fleet --probe=SPEC`, which parses SPEC with this same parser.
    """
    from numdoctor.probe import MODES, ProbeOptions

    for name in ("timeout", "hang_timeout", "budget"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise fail(f"--{name.replace('_', '-')} must be positive")
    if args.jobs is not None and args.jobs < 1:
        raise fail("--jobs must be at least 1")
    envs: list[dict[str, str]] = [{}, {"OMP_NUM_THREADS": "1"}]
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise fail(f"--env {item!r} is not of the form NAME=VALUE")
        envs.append({key: value})
    modes = None
    if args.modes is not None:
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise fail(f"--mode: unknown mode(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(MODES)}")
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    return ProbeOptions(modules=modules, ops=ops, orders=args.orders, fork=args.fork,
                        modes=modes, envs=tuple(envs), timeout=args.timeout,
                        hang_timeout=args.hang_timeout, jobs=jobs, budget=args.budget,
                        minimize=not args.no_minimize, fresh=getattr(args, "fresh", False))


def run(args: argparse.Namespace) -> int:
    from numdoctor.cli import UsageError
    from numdoctor.commands.check import default_modules, parse_modules
    from numdoctor.probe import CANARIES, build_report, count_scenarios, probe

    if args.list_ops:
        for canary in CANARIES.values():
            print(f"{canary.name:20} {canary.description}")
        return 0
    modules = (parse_modules(args.imports) or []) if args.imports else default_modules()
    options = options_from_args(
        args, modules, jobs=args.jobs or _effective_cpus(),
        fail=lambda message: UsageError(f"numdoctor probe: {message}"))
    try:
        total = count_scenarios(options)
    except ValueError as exc:
        raise UsageError(f"numdoctor probe: {exc}") from None
    with _ScenarioProgress(total) as progress:
        result = probe(options, progress)
    report = build_report(result)
    from numdoctor.commands._common import emit_report

    emit_report(report, args.format, args.output)
    return 1 if report.fails(args.fail_on) else 0


class _ScenarioProgress(StderrProgress):
    """One step per scenario, with its outcome."""

    def columns(self) -> tuple:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

        return (TextColumn("probe"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.description}"))

    def update(self, label: str, result) -> None:
        outcome = "not run" if result is None else result.outcome
        from numdoctor.redact import redact_text

        self.bar.update(self.task, advance=1,
                        description=redact_text(f"{outcome}: {label}")[:80])
