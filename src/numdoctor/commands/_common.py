"""Options and output handling shared by the subcommands."""

from __future__ import annotations

import os
import sys

from numdoctor.commands._options import FAIL_ON, add_output_options
from numdoctor.findings import Report

__all__ = ["FAIL_ON", "add_output_options", "emit_report", "use_color", "write_report"]


def use_color(stream) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def write_report(report: Report, fmt: str, path: str, *, option: str = "--output") -> None:
    """The one way a report reaches a file, for every command (`--output`, `--report`)."""
    from numdoctor.render import render

    text = render(report, fmt, color=False)
    try:
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
    except OSError as exc:
        from numdoctor.cli import UsageError

        raise UsageError(f"numdoctor: cannot write {option} {path!r}: "
                         f"{exc.strerror}") from exc


def emit_report(report: Report, fmt: str | None, output: str | None) -> None:
    from numdoctor.render import render
    from numdoctor.render.formats import format_for

    fmt = fmt or format_for(output)
    if output:
        write_report(report, fmt, output)
        counts = report.counts()
        print(f"numdoctor: report written to {output} ({counts['error']} error(s), "
              f"{counts['warning']} warning(s))", file=sys.stderr)
        return
    width = None
    if fmt == "text" and sys.stdout.isatty():
        width = os.get_terminal_size(sys.stdout.fileno()).columns
    text = render(report, fmt, color=fmt == "text" and use_color(sys.stdout), width=width)
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        # A path or value that is not valid in the terminal's encoding (bytes that are not
        # UTF-8 in a file name): shown escaped rather than lost with the whole report.
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode(encoding, "backslashreplace"))
    sys.stdout.flush()
