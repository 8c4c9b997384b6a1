"""Keep secrets out of everything numdoctor shows, and nothing else.

Reports are pasted into public bug trackers. Every output path masks what it shows through
this one step: `render()` for every format of every report, `redact_text()` for the few lines
printed outside a report (`numdoctor run`'s stderr summary, the pytest plugin's failure
reports, `numdoctor.isolate()`'s exceptions). docs/redaction.md lists the rules.

- `redact_text(text)`: secrets in free text (`text.py`);
- `redact_tree(data)`: the same in every string of a JSON-like report, plus the values under
  secret keys (`TF_PASSWORD: ...`) and the argument after a secret flag in argv lists;
- `redact_environment(env)`, `redact_argv(argv)`: the same for one mapping or command line;
- `clip_tail(text, limit)`: the end of a long text (a traceback) for the facts, masked before
  it is cut: a token cut in half has lost the prefix that makes it recognisable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from numdoctor.redact.names import Kind, is_secret_name, is_userinfo_flag
from numdoctor.redact.text import REDACTED, looks_like_path, redact_text

__all__ = ["REDACTED", "clip_tail", "is_secret_name", "redact_argv", "redact_environment",
           "redact_text", "redact_tree"]


def _secret_value(name: str, value: str) -> str:
    """The value of a variable or key named `name`: all of it when the name is a secret's,
    unless it is the path of a file (`GOOGLE_APPLICATION_CREDENTIALS=/run/keys/sa.json`)."""
    if value and is_secret_name(name) and not value.startswith(REDACTED) and \
            not looks_like_path(value):
        return REDACTED
    return redact_text(value)


def redact_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Variables named like secrets lose their value; every value is scanned as text."""
    return {name: _secret_value(name, value) for name, value in env.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line, item by item: `--password x` masks `x`; `--token=x` masks after `=`."""
    out = [redact_text(item) for item in argv]
    for index in range(len(out) - 1):
        flag, value = out[index], out[index + 1]
        if not flag.startswith("-") or "=" in flag or value.startswith(("-", REDACTED)):
            continue
        if is_userinfo_flag(flag):
            user, colon, password = value.partition(":")
            if colon and password and not password.isdigit():
                out[index + 1] = f"{user}:{REDACTED}"
        elif is_secret_name(flag, Kind.FLAG) and value and not looks_like_path(value):
            out[index + 1] = REDACTED
    return out


def redact_tree(value: Any) -> Any:
    """Mask secrets in every string of a JSON-like structure (a new structure is returned)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _item(key, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return redact_argv(value)
        return [redact_tree(item) for item in value]
    return value


def _item(key: object, value: Any) -> Any:
    """A mapping's value: named by its key when the key is a name (`TF_PASSWORD`, `api-key`;
    not a sentence or a path)."""
    if isinstance(key, str) and isinstance(value, str) and \
            key.replace("-", "_").replace(".", "_").isidentifier():
        return _secret_value(key, value)
    return redact_tree(value)


def clip_tail(text: str, limit: int) -> str:
    """The last `limit` characters of `text` or fewer, from the start of a line, masked."""
    if len(text) <= limit:
        return text
    tail = redact_text(text)[-limit:]
    newline = tail.find("\n")
    return tail[newline + 1:] if 0 <= newline < len(tail) - 1 else tail
