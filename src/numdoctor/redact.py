"""Keep secrets out of reports.

Two nets: environment variables whose *names* look secret have their values replaced, and any
string anywhere in a report that looks like a known token format is masked. Reports are pasted
into public bug trackers, so both run on every format.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|(^|_)PWD($|_)|(^|_)KEY($|_)|API_?KEY|ACCESS_?KEY|"
    r"PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION|SIGNATURE|(^|_)SAS($|_)|CONN(ECTION)?_?STR|DSN)",
    re.IGNORECASE,
)

# Known token shapes. Each is specific enough not to eat ordinary paths or version strings.
_TOKEN_PATTERNS = [
    r"gh[pousr]_[A-Za-z0-9]{36,}",  # GitHub classic tokens
    r"github_pat_[A-Za-z0-9_]{22,}",  # GitHub fine-grained
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}",  # AWS access key id
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",  # OpenAI / Anthropic
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"ya29\.[0-9A-Za-z_\-]{20,}",  # Google OAuth
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-[A-Za-z0-9_\-]{50,}",
    r"sk_live_[0-9a-zA-Z]{24,}",  # Stripe
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
_TOKEN = re.compile("|".join(f"(?:{p})" for p in _TOKEN_PATTERNS))
# Credentials inside URLs: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+(@)")
# KEY=value pairs inside command lines or logs: `--password=x`, `API_KEY=abc`
_ASSIGNMENT = re.compile(
    r"(\b[\w.\-]*(?:TOKEN|SECRET|PASSW(?:OR)?D|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)"
    r"[\w.\-]*\s*[=:]\s*)(['\"]?)[^\s'\"]+\2",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    text = _TOKEN.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}\2", text)
    return _ASSIGNMENT.sub(rf"\1{REDACTED}", text)


def redact_environment(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) and v else redact_text(v)) for k, v in env.items()}


def redact_tree(value: Any) -> Any:
    """Mask secrets in every string of a JSON-like structure; keys named like secrets too."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_name(k) and isinstance(v, str) and v
                else redact_tree(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return value
