"""`python every_format.py OUTDIR ARGS...`: `numdoctor ARGS...`, exactly as on the command line,
and the report it made rendered in every format into OUTDIR/report.{text,json,markdown,html}.

The command writes its own output as usual (stdout, stderr, --output, --report); the report
is caught where the command hands it to the renderer, so every format is rendered from the
same unmasked report the command had, through the same `render()`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    import numdoctor.commands._common as common
    from numdoctor.cli import main as numdoctor
    from numdoctor.render import FORMATS, render

    reports = []
    emit, write = common.emit_report, common.write_report

    def caught_emit(report, fmt, output):
        reports.append(report)
        emit(report, fmt, output)

    def caught_write(report, fmt, path, **kwargs):  # every command's report file
        reports.append(report)
        write(report, fmt, path, **kwargs)

    common.emit_report = caught_emit
    common.write_report = caught_write
    code = numdoctor(argv)
    for report in reports[:1]:
        for fmt in FORMATS:
            (out / f"report.{fmt}").write_text(render(report, fmt), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
