"""Render reports (last stage of the pipeline). Renderers see only the report's plain dict.

Every format of every command goes through the same redaction step (numdoctor.redact,
docs/redaction.md): the dict is redacted before a renderer sees it (values under secret names,
the argument after a secret flag), and the rendered text is scanned once more, so no renderer
can leak by mistake.
"""

from __future__ import annotations

from typing import Any, Protocol

from numdoctor.render.formats import FORMATS

# numdoctor.redact compiles its patterns on import (milliseconds): it loads when a report is
# rendered, or while `check` waits for its collector, not when a command line is parsed.


class Renderable(Protocol):
    """A Report, as renderers see it: through its plain data only."""

    def to_dict(self) -> dict[str, Any]: ...


def report_data(report: Renderable | dict[str, Any]) -> dict[str, Any]:
    # A Report or its dict: renderers know reports only by their plain data.
    from numdoctor.redact import redact_tree

    data = report if isinstance(report, dict) else report.to_dict()
    return redact_tree(data)


def render(report: Renderable | dict[str, Any], fmt: str = "text", *, color: bool = False,
           width: int | None = None, verbose: bool = False) -> str:
    data = report_data(report)
    if fmt == "json":
        from numdoctor.render.json_format import render_json

        out = render_json(data)
    elif fmt == "markdown":
        from numdoctor.render.markdown import render_markdown

        out = render_markdown(data)
    elif fmt == "html":
        from numdoctor.render.html import render_html

        out = render_html(data)
    elif fmt == "text":
        from numdoctor.render.text import render_text

        out = render_text(data, color=color, width=width, verbose=verbose)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    from numdoctor.redact import redact_text

    return redact_text(out)
