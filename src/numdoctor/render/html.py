"""HTML for notebooks (Jupyter's rich display): findings first, facts collapsed."""

from __future__ import annotations

from html import escape
from typing import Any

from numdoctor.render import _facts

_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}


def _table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th style='text-align:left'>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{escape(str(c))}</td>" for c in row)
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: dict[str, Any]) -> str:
    parts = ["<div class='numdoctor-report'>",
             f"<h3>numdoctor {escape(data.get('kind', 'check'))} report</h3>",
             f"<p><b>{escape(_facts.summary_line(data))}</b></p>"]
    outcome = data.get("outcome") or {}
    if outcome.get("summary"):
        parts.append(f"<p><b>{escape(outcome['summary'])}</b></p>")
    findings = data.get("findings", [])
    if not findings:
        parts.append("<p style='color:#2e7d32'>No problems found.</p>")
    for f in findings:
        color = _COLOR.get(f["severity"], "inherit")
        where = f" <i>({escape(f['where'])})</i>" if f.get("where") else ""
        evidence = escape("\n".join(str(e) for e in f.get("evidence", [])))
        parts.append(
            "<details open><summary>"
            f"<b style='color:{color}'>{escape(f['severity'].upper())}</b> "
            f"<code>{escape(f['code'])}</code> {escape(f['title'])}{where}</summary>"
            + (f"<pre>{evidence}</pre>" if evidence else "")
            + (f"<p><b>Why:</b> {escape(f['why'])}</p>" if f.get("why") else "")
            + (f"<p><b>Fix:</b> {escape(f['fix'])}</p>" if f.get("fix") else "")
            + "</details>")
    for section in outcome.get("sections", []):
        body = (_table(section.get("columns", []), section["rows"]) if "rows" in section
                else f"<pre>{escape(section.get('text', ''))}</pre>")
        parts.append(f"<details><summary>{escape(section.get('title', ''))}</summary>"
                     f"{body}</details>")
    snapshot = data.get("snapshot")
    if snapshot:
        facts = "<br>".join(escape(line) for line in _facts.system_lines(snapshot))
        parts.append(
            "<details><summary>Environment snapshot</summary>"
            f"<p>{facts}</p>"
            + _table(_facts.LIBRARY_COLUMNS, _facts.library_rows(snapshot))
            + (_table(_facts.FRAMEWORK_COLUMNS, _facts.framework_rows(snapshot))
               if snapshot.get("frameworks") else "")
            + f"<pre>{escape(chr(10).join(_facts.environment_lines(snapshot)))}</pre>"
            + "</details>")
    parts.append("</div>")
    return "".join(parts)
