"""`numdoctor fleet`: the same diagnosis on every member of a Dask cluster, and how they differ."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

from numdoctor.commands._options import FAIL_ON, add_output_options

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CONNECT_LIMIT = 30.0  # seconds to find the scheduler, at most (Dask's own default)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fleet", help="diagnose every worker of a Dask cluster and show how they differ",
        description="Collect a snapshot on every worker of a Dask cluster, on the scheduler "
                    "and on this client (through Dask's own out-of-band calls), apply the "
                    "rules to each, and report the findings per worker (identical ones "
                    "grouped) and where workers differ from the majority: packages, "
                    "BLAS/OpenMP libraries, thread settings, CPU flags, effective CPUs. "
                    "Needs numdoctor in every worker's environment and the 'dask' extra "
                    "here (pip install 'numdoctor[dask]').",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of a running scheduler, e.g. tcp://10.0.0.5:8786")
    target.add_argument("--local", metavar="N", type=_positive_int,
                        help="start a local cluster of N worker processes (1 thread each) "
                             "and examine it")
    parser.add_argument("--import", dest="imports", metavar="MODS",
                        help="comma-separated modules each member imports, in this order, in a "
                             "fresh subprocess on its host before collecting (default: "
                             "describe each worker process as it is now)")
    parser.add_argument("--probe", nargs="?", const="", metavar="SPEC",
                        help="also spread a `numdoctor probe` matrix over the workers. SPEC "
                             "is one argument holding probe options, e.g. "
                             "--probe='--import numpy,torch --op torch.mm --fork'; without "
                             "--import there: every known framework installed on some "
                             "worker; --jobs there is per worker (default: its Dask threads)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds the whole collection may take, and with --probe how "
                             "long a worker may take beyond its scenarios' own limits; "
                             "members that have not answered by then are reported as hung "
                             "(default: 120)")
    parser.add_argument("--fail-on", choices=FAIL_ON, default="error",
                        help="exit 1 when a finding is at least this severe (default: error)")
    add_output_options(parser)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("needs at least 1 worker")
    return number


def parse_modules(value: str | None, option: str = "--import") -> list[str] | None:
    from numdoctor.cli import UsageError

    if value is None:
        return None
    modules = [m.strip() for m in value.split(",") if m.strip()]
    if not modules:
        raise UsageError(f"numdoctor fleet: {option} needs at least one module name")
    for module in modules:
        if not _MODULE.match(module):
            raise UsageError(f"numdoctor fleet: {option}: {module!r} is not a module name")
    return modules


class _SpecParser(argparse.ArgumentParser):
    """`numdoctor probe`'s own parser, reporting errors as fleet usage errors."""

    def error(self, message: str) -> NoReturn:
        from numdoctor.cli import UsageError

        raise UsageError(f"numdoctor fleet: --probe: {message}")


# Options of `numdoctor probe` that belong to `numdoctor fleet` itself (one report, one exit).
_NOT_IN_SPEC = (("format", "--format"), ("output", "--output"), ("fail_on", "--fail-on"),
                ("list_ops", "--list-ops"))


def parse_probe_spec(spec: str) -> tuple[Any, int | None]:
    """SPEC (`numdoctor probe` options in one string) -> (ProbeOptions, jobs per worker).

    Parsed by the probe subcommand's own parser, so the options, choices and defaults are
    the same as `numdoctor probe`'s; no --import means every known framework a worker has.
    """
    import shlex

    from numdoctor.cli import UsageError
    from numdoctor.commands import probe as probe_command
    from numdoctor.fleet.probing import validate

    def fail(message: str) -> UsageError:
        return UsageError(f"numdoctor fleet: --probe: {message}")

    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise fail(f"cannot split {spec!r}: {exc}") from None
    top = _SpecParser(prog="numdoctor", add_help=False)
    commands = top.add_subparsers(dest="command", parser_class=_SpecParser)
    probe_command.add_parser(commands)
    args = top.parse_args(["probe", *words])
    defaults = commands.choices["probe"]
    for dest, flag in _NOT_IN_SPEC:
        if getattr(args, dest) != defaults.get_default(dest):
            raise fail(f"{flag} is an option of numdoctor fleet itself, not of the probe")
    modules = (parse_modules(args.imports, "--probe: --import") or []) if args.imports else []
    options = probe_command.options_from_args(args, modules, jobs=args.jobs or 1, fail=fail)
    try:
        validate(options)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return options, args.jobs


def run(args: argparse.Namespace) -> int:
    from numdoctor.cli import UsageError

    if args.timeout <= 0:
        raise UsageError("numdoctor fleet: --timeout must be positive")
    modules = parse_modules(args.imports)
    probe_options, jobs = parse_probe_spec(args.probe) if args.probe is not None else (None,
                                                                                       None)
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        print(f"numdoctor fleet: needs dask.distributed, which cannot be imported ({exc}); "
              "install it with: pip install 'numdoctor[dask]'", file=sys.stderr)
        return 2

    from numdoctor.commands._common import emit_report
    from numdoctor.fleet.api import check
    from numdoctor.fleet.probing import probe

    try:
        with _client(args) as client:
            if probe_options is None:
                report = check(client, imports=modules, timeout=args.timeout)
            else:
                report = probe(client, probe_options, timeout=args.timeout, jobs=jobs,
                               imports=modules)
    except ClusterUnavailable as exc:  # it names the address, which may carry a password
        from numdoctor.redact import redact_text

        print(f"numdoctor fleet: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    emit_report(report, args.format, args.output)
    return 1 if report.fails(args.fail_on) else 0


class ClusterUnavailable(Exception):
    """The scheduler could not be reached, or the local cluster did not start."""


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    import logging

    from distributed import Client

    connect = min(args.timeout, _CONNECT_LIMIT)
    if args.scheduler is not None:
        try:
            client = Client(args.scheduler, timeout=connect, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise ClusterUnavailable(
                f"cannot connect to the scheduler at {args.scheduler} within {connect:g} s: "
                f"{_one_line(exc)}") from None
        with client:
            yield client
        return

    from distributed import LocalCluster

    try:
        with _status(f"starting a local cluster of {args.local} worker(s)"):
            # The scheduler runs in this process; quieten its routine logging so the report
            # is the only output.
            cluster = LocalCluster(n_workers=args.local, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
    except Exception as exc:
        raise ClusterUnavailable(f"the local cluster of {args.local} worker(s) did not start: "
                                 f"{_one_line(exc)}") from None
    with cluster, Client(cluster, set_as_default=False) as client:
        try:
            client.wait_for_workers(args.local, timeout=args.timeout)
        except (TimeoutError, OSError) as exc:
            raise ClusterUnavailable(f"the local cluster's {args.local} worker(s) did not "
                                     f"all start within {args.timeout:g} s: "
                                     f"{_one_line(exc)}") from None
        yield client


def _status(message: str) -> contextlib.AbstractContextManager:
    """A spinner on stderr while something slow starts; nothing when stderr is not a TTY."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
