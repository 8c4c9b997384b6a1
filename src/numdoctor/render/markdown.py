"""Markdown ready to paste into a bug tracker: findings first, long parts collapsed."""

from __future__ import annotations

from typing import Any

from numdoctor.render import _facts

_ICON = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}


def _cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def render_markdown(data: dict[str, Any]) -> str:
    kind = data.get("kind", "check")
    out = [f"## numdoctor {kind} report", "",
           f"numdoctor {data.get('tool_version', '')} — **{_facts.summary_line(data)}**", ""]
    outcome = data.get("outcome") or {}
    if outcome.get("summary"):
        out += [f"**{outcome['summary']}**", ""]
    findings = data.get("findings", [])
    if findings:
        out += ["### Findings", ""]
    for f in findings:
        out.append(f"#### {_ICON.get(f['severity'], '')} `{f['code']}` {f['title']}"
                   + (f" ({f['where']})" if f.get("where") else ""))
        out.append("")
        evidence = [str(e) for e in f.get("evidence", [])]
        if evidence:
            block = ["```", *evidence, "```"]
            long = sum(e.count("\n") + 1 for e in evidence) > 12
            out += _details("Evidence", block) if long else [*block, ""]
        if f.get("why"):
            out += [f"**Why:** {f['why']}", ""]
        if f.get("fix"):
            out += [f"**Fix:** {f['fix']}", ""]
    if not findings:
        out += ["No problems found.", ""]

    for section in outcome.get("sections", []):
        if "rows" in section:
            body = _table(section.get("columns", []), section["rows"])
        else:
            body = ["```", section.get("text", "").rstrip(), "```"]
        out += _details(section.get("title", ""), body)

    snapshot = data.get("snapshot")
    if snapshot:
        env_lines = _facts.environment_lines(snapshot)
        body = [f"- {line}" for line in _facts.system_lines(snapshot)]
        libraries = _facts.library_rows(snapshot)
        body += ["", *(_table(_facts.LIBRARY_COLUMNS, libraries) if libraries
                       else ["No BLAS/OpenMP/CUDA library is loaded."])]
        if snapshot.get("frameworks"):
            body += ["", *_table(_facts.FRAMEWORK_COLUMNS, _facts.framework_rows(snapshot))]
        if snapshot.get("imports"):
            body += ["", *_table(_facts.IMPORT_COLUMNS, _facts.import_rows(snapshot))]
        body += ["", "Environment:", "```", *(env_lines or ["(none relevant)"]), "```"]
        body += [f"- note: {n}" for n in snapshot.get("notes", [])]
        out += _details("Environment snapshot", body)
    return "\n".join(out).rstrip() + "\n"
