"""Command line: `numdoctor [check|explain|...]`. Each subcommand lives in numdoctor.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from numdoctor._version import __version__

# Subcommand modules, each with `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = ("check", "explain", "run", "probe", "fleet")
DEFAULT_COMMAND = "check"


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="numdoctor",
        description="Find out why a numerical Python program hangs, crashes or returns garbage.",
    )
    parser.add_argument("--version", action="version", version=f"numdoctor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"numdoctor.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in
                         ("-h", "--help", "--version")):
        args_list.insert(0, DEFAULT_COMMAND)
    try:
        args = build_parser().parse_args(args_list)
        module = importlib.import_module(f"numdoctor.commands.{args.command}")
        return module.run(args)
    except UsageError as exc:
        print(f"{exc} (see 'numdoctor --help')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("numdoctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `numdoctor check | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return 0
