"""The report formats every command offers, and the format a file name implies. (No imports:
the command-line parsers read this while they are built.)"""

from __future__ import annotations

FORMATS = ("text", "json", "markdown", "html")
_SUFFIXES = {".json": "json", ".md": "markdown", ".markdown": "markdown", ".html": "html",
             ".htm": "html"}


def format_for(path: str | None, default: str = "text") -> str:
    """json for report.json, markdown for report.md, ... `default` for anything else."""
    name = (path or "").lower()
    return next((fmt for suffix, fmt in _SUFFIXES.items() if name.endswith(suffix)), default)
