"""Options shared by the subcommands; argparse only, so parsers build fast."""

from __future__ import annotations

import argparse

from numdoctor.render.formats import FORMATS

FAIL_ON = ("error", "warning", "never")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="report format (default: from the --output file's suffix, "
                             "else text)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the report to FILE instead of standard output")
