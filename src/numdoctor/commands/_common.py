"""Options and output handling shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from numdoctor.findings import Report

FAIL_ON = ("error", "warning", "never")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                        help="report format (default: text)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the report to FILE instead of standard output")


def use_color(stream) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def emit_report(report: Report, fmt: str, output: str | None) -> None:
    from numdoctor.render import render

    if output:
        text = render(report, fmt, color=False)
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            from numdoctor.cli import UsageError

            raise UsageError(f"numdoctor: cannot write --output {output!r}: "
                             f"{exc.strerror}") from exc
        counts = report.counts()
        print(f"numdoctor: report written to {output} ({counts['error']} error(s), "
              f"{counts['warning']} warning(s))", file=sys.stderr)
        return
    width = None
    if fmt == "text" and sys.stdout.isatty():
        width = os.get_terminal_size(sys.stdout.fileno()).columns
    sys.stdout.write(render(report, fmt, color=fmt == "text" and use_color(sys.stdout),
                            width=width))
    sys.stdout.flush()
