"""Terminal text through rich: readable tables, colour only on a TTY and without NO_COLOR."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from numdoctor.render import _facts

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_text(data: dict[str, Any], *, color: bool = False, width: int | None = None,
                verbose: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=color, no_color=not color, color_system="auto" if color
        else None, width=width or 120, highlight=False, soft_wrap=False,
    )
    title = f"numdoctor {data.get('kind', 'check')} {data.get('tool_version', '')}"
    console.print(Text(title, style="bold"))
    outcome = data.get("outcome") or {}
    if outcome.get("summary"):
        console.print(Text(outcome["summary"], style="bold"))
    snapshot = data.get("snapshot")
    if snapshot:
        _snapshot(console, snapshot, verbose)
    for section in outcome.get("sections", []):
        _section(console, section)
    _findings(console, data.get("findings", []))
    console.print(Text(f"Summary: {_facts.summary_line(data)}", style="bold"))
    return buffer.getvalue()


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False,
                  header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(c)) for c in row))
    return table


def _snapshot(console: Console, snapshot: dict[str, Any], verbose: bool) -> None:
    for line in _facts.system_lines(snapshot):
        console.print(escape(line))
    imports = _facts.import_rows(snapshot)
    if imports:
        console.print()
        console.print(_table("Imports", _facts.IMPORT_COLUMNS, imports))
    libs = _facts.library_rows(snapshot)
    console.print()
    if libs:
        console.print(_table("Native libraries (threads = pool size, running = pool threads "
                             "alive)", _facts.LIBRARY_COLUMNS, libs))
    elif (snapshot.get("process") or {}).get("memory_map_read", True):
        console.print("Native libraries: no BLAS/OpenMP/CUDA library is loaded")
    else:
        console.print("Native libraries: unknown (the process's memory map could not be read)")
    frameworks = _facts.framework_rows(snapshot)
    if frameworks:
        console.print()
        console.print(_table("Frameworks", _facts.FRAMEWORK_COLUMNS, frameworks))
    env = _facts.environment_lines(snapshot)
    console.print()
    shown = escape(", ".join(env)) if env else "(no relevant variables set)"
    console.print("Environment: " + shown)
    for note in snapshot.get("notes", []):
        console.print(Text(f"note: {note}", style="dim"))
    console.print()


def _section(console: Console, section: dict[str, Any]) -> None:
    if "rows" in section:
        console.print(_table(section.get("title", ""), section.get("columns", []),
                             section["rows"]))
    else:
        console.print(Text(section.get("title", ""), style="bold"))
        console.print(escape(section.get("text", "")).rstrip())
    console.print()


def _findings(console: Console, findings: list[dict[str, Any]]) -> None:
    if not findings:
        console.print(Text("No problems found.", style="green"))
        return
    console.print(Text("Findings", style="bold underline"))
    for finding in findings:
        severity = finding["severity"]
        head = Text()
        head.append(f"{severity.upper():7} ", style=_STYLE.get(severity, ""))
        head.append(f"{finding['code']} ", style="bold")
        head.append(finding["title"])
        if finding.get("where"):
            head.append(f"  [{finding['where']}]", style="dim")
        console.print(head)
        for line in finding.get("evidence", []):
            for sub in str(line).splitlines():
                console.print(Text(f"    {sub}", style="dim"), soft_wrap=True)
        if finding.get("why"):
            console.print(f"  why: {escape(finding['why'])}")
        if finding.get("fix"):
            console.print(Text("  fix: ", style="green") + Text(finding["fix"]))
        console.print(Text(f"  more: numdoctor explain {finding['code']}", style="dim"))
    console.print()
