"""Command line: `numdoctor [check|explain|...]`. Each subcommand lives in numdoctor.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from numdoctor._version import __version__

# Subcommand modules, each with `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = ("check", "explain", "run", "probe", "fleet")
DEFAULT_COMMAND = "check"


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only `command`'s part of it.

    Parsing a known subcommand needs only its own parser; building all five would import
    their modules, which `numdoctor check` would pay for before its collector starts.
    """
    parser = _Parser(
        prog="numdoctor",
        description="Find out why a numerical Python program hangs, crashes or returns garbage.",
    )
    parser.add_argument("--version", action="version", version=f"numdoctor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS if command is None else (command,):
        importlib.import_module(f"numdoctor.commands.{name}").add_parser(subparsers)
    return parser


def entry() -> None:
    """The `numdoctor` console script and `python -m numdoctor`: `main()`, then exit.

    A command whose module sets `EXIT_WITHOUT_TEARDOWN` (its output written, its children
    reaped or killed, nothing left for atexit) ends the process with os._exit once the
    standard streams are flushed: tearing down the few hundred modules `check` loaded costs
    10-20 ms of its whole-process time, and nothing waits for it.
    """
    code, module = _dispatch(sys.argv[1:])
    if getattr(module, "EXIT_WITHOUT_TEARDOWN", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or broken stream: exit as usual
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one numdoctor command line; returns its exit status."""
    return _dispatch(list(sys.argv[1:] if argv is None else argv))[0]


def _dispatch(argv: Sequence[str]) -> tuple[int, ModuleType | None]:
    """(exit status, the subcommand's module, None when none ran)."""
    args_list = list(argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in
                         ("-h", "--help", "--version")):
        args_list.insert(0, DEFAULT_COMMAND)
    module = None
    try:
        command = args_list[0] if args_list[0] in COMMANDS else None
        args = build_parser(command).parse_args(args_list)
        module = importlib.import_module(f"numdoctor.commands.{args.command}")
        return module.run(args), module
    except UsageError as exc:
        print(f"{exc} (see 'numdoctor --help')", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("numdoctor: interrupted", file=sys.stderr)
        return 130, module
    except BrokenPipeError:
        # `numdoctor check | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return 0, module
