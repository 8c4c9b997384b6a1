"""`numdoctor check`: what is loaded, what conflicts, how to fix it."""

from __future__ import annotations

import argparse
import gc
import re
from typing import TYPE_CHECKING

from numdoctor.commands._options import FAIL_ON, add_output_options
from numdoctor.commands._progress import StderrProgress

if TYPE_CHECKING:
    from numdoctor.snapshot.model import Snapshot

# Once the report is written nothing is left to clean up (the collector child is killed and
# reaped, its scratch files are anonymous): see numdoctor.cli.entry.
EXIT_WITHOUT_TEARDOWN = True

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="diagnose the BLAS/OpenMP/CUDA stack (default command)",
        description="Import the numerical frameworks in a fresh subprocess (or those named "
                    "with --import, in that order), then report the loaded native libraries, "
                    "their thread pools, the conflicts between them and how to fix them.",
    )
    parser.add_argument("--import", dest="imports", metavar="MODS",
                        help="comma-separated modules to import, in this order "
                             "(default: every known framework that is installed, and "
                             "scipy.linalg after scipy, which loads SciPy's BLAS)")
    parser.add_argument("--fail-on", choices=FAIL_ON, default="error",
                        help="exit 1 when a finding is at least this severe (default: error)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds one import may take before it counts as hung "
                             "(default: 120)")
    parser.add_argument("--scan-abi", action="store_true",
                        help="read every compiled file of the environment for the NumPy it "
                             "was built for (default: only the loaded ones)")
    parser.add_argument("--confirm-abi", action="store_true",
                        help="import each extension that looks built for another NumPy in a "
                             "fresh interpreter and report NumPy's own message")
    add_output_options(parser)


def parse_modules(value: str | None) -> list[str] | None:
    from numdoctor.cli import UsageError

    if value is None:
        return None
    modules = [m.strip() for m in value.split(",") if m.strip()]
    if not modules:
        raise UsageError("numdoctor check: --import needs at least one module name")
    for module in modules:
        if not _MODULE.match(module):
            raise UsageError(f"numdoctor check: --import: {module!r} is not a module name")
    return modules


def default_modules() -> list[str]:
    """The known frameworks that are installed, in canonical order, found without importing,
    each followed by the submodules that load its native runtimes (known.DEFAULT_SUBMODULES:
    scipy.linalg after scipy)."""
    import importlib.util

    from numdoctor.snapshot.known import DEFAULT_SUBMODULES, KNOWN_FRAMEWORKS

    found = []
    for name in KNOWN_FRAMEWORKS:
        try:
            installed = importlib.util.find_spec(name) is not None
        except Exception:  # a broken sys.path entry or a half-installed package
            installed = False
        if installed:
            found.append(name)
            found.extend(DEFAULT_SUBMODULES.get(name, ()))
    return found


def run(args: argparse.Namespace) -> int:
    # A short-lived process that frees almost nothing before it exits: collections would
    # only cost time (the forked collector runs without them too, see _child.py). Restored
    # for callers of numdoctor.cli.main() in their own process.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _check(args)
    finally:
        if collecting:
            gc.enable()


def _check(args: argparse.Namespace) -> int:
    # Only what starting the collector needs is imported before it forks; the rest loads in
    # parallel with the child's imports (`_prepare`) or after.
    from numdoctor.cli import UsageError
    from numdoctor.snapshot.isolated import collect_isolated

    if args.timeout <= 0:
        raise UsageError("numdoctor check: --timeout must be positive")
    modules = parse_modules(args.imports)
    if modules is None:
        modules = default_modules()
    from numdoctor.render.formats import format_for

    args.format = args.format or format_for(args.output)
    with _ImportProgress(len(modules) + 1 if modules else 0) as progress:
        try:
            snapshot = collect_isolated(modules, timeout=args.timeout, progress=progress,
                                        while_waiting=lambda: _prepare(args.format),
                                        scan_abi=args.scan_abi, confirm_abi=args.confirm_abi)
        except (UsageError, BrokenPipeError):
            raise
        except Exception as exc:
            # Still a report: what failed, as a finding, rather than a traceback.
            snapshot = _failed_collection(exc)
    from numdoctor.commands._common import emit_report
    from numdoctor.findings import Report
    from numdoctor.rules import apply_rules

    snapshot.import_set = "explicit" if args.imports is not None else "default"
    report = Report(kind="check", findings=apply_rules(snapshot), snapshot=snapshot.to_dict())

    emit_report(report, args.format, args.output)
    return 1 if report.fails(args.fail_on) else 0


def _failed_collection(exc: Exception) -> Snapshot:
    from numdoctor.snapshot.failures import describe_failure
    from numdoctor.snapshot.model import CollectionError, Snapshot

    snapshot = Snapshot(collected_by="subprocess")
    snapshot.collection_errors.append(CollectionError(
        **describe_failure("snapshot (the collector as a whole)", exc)))
    try:
        from numdoctor.snapshot.system import collect_system

        snapshot.system = collect_system()
    except Exception:
        pass  # the finding above already says the facts are incomplete
    return snapshot


def _prepare(fmt: str) -> None:
    """Load the rules, the snapshot assembly and the renderer while the collector imports."""
    import importlib

    from numdoctor.rules.registry import load_snapshot_checks

    load_snapshot_checks()
    renderer = {"json": "numdoctor.render.json_format",
                "markdown": "numdoctor.render.markdown"}.get(fmt, "numdoctor.render.text")
    for module in ("numdoctor.findings", "numdoctor.commands._common", "numdoctor.redact",
                   "numdoctor.snapshot.collect", "numdoctor.snapshot.binary",
                   "numdoctor.snapshot.failures", renderer):
        importlib.import_module(module)
    if fmt == "text":
        # rich sets up its tables and caches on the first render; do that one now, on an
        # empty report, rather than after the collector has answered.
        from numdoctor.findings import Report
        from numdoctor.render import render
        from numdoctor.snapshot.model import Snapshot

        render(Report(kind="check", findings=[], snapshot=Snapshot().to_dict()), "text",
               color=False)


class _ImportProgress(StderrProgress):
    """One step per import, one for collecting."""

    description = "starting"

    def columns(self) -> tuple:
        from rich.progress import BarColumn, SpinnerColumn, TextColumn

        return (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"))

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "import":
            self.bar.update(self.task, description=f"import {event['module']}")
        elif kind == "imported":
            self.bar.advance(self.task)
        elif kind == "collect":
            self.bar.update(self.task, description="collecting")
        elif kind == "done":
            self.bar.advance(self.task)
