"""Secrets recognised by their shape alone, whatever name they stand under.

Only shapes a provider documents (a fixed prefix, a fixed length or structure) are listed:
nothing here matches a hex digest, a UUID, a build id or a path. Entropy alone never counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import NamedTuple


def lazy_pattern(pattern: str) -> Callable[[], re.Pattern[str]]:
    """A pattern compiled on its first use. Every numdoctor command loads this package, and
    most texts never reach the patterns that only run once a cheap test has matched (a known
    prefix is present, an ellipsis, `PRIVATE KEY`): compiling those up front cost a few
    milliseconds of each start-up."""
    return cache(lambda: re.compile(pattern))


class Shape(NamedTuple):
    """A provider's token format. `prefixes`: the literal strings every token starts with;
    `word`: the token is one word of letters, digits, `_` and `-` (no dot, no slash)."""

    name: str
    prefixes: tuple[str, ...]
    pattern: str
    word: bool = True


AWS_ID_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ABIA",
                   "ACCA")
_AWS_ID = "(?:" + "|".join(AWS_ID_PREFIXES) + ")[A-Z0-9]{16}"

PROVIDER_TOKENS: tuple[Shape, ...] = (
    Shape("OpenAI / Anthropic key", ("sk-",),
          r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    Shape("GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
          r"gh[pousr]_[A-Za-z0-9]{36,}"),
    Shape("GitHub fine-grained token", ("github_pat_",), r"github_pat_[A-Za-z0-9_]{22,}"),
    Shape("GitLab token", ("glpat-", "gldt-", "glrt-", "glptt-", "glcbt-", "glft-", "glimt-",
                           "glsoat-", "gloas-"),
          r"gl(?:pat|dt|rt|ptt|cbt|ft|imt|soat|oas)-[A-Za-z0-9_\-]{20,}"),
    Shape("Hugging Face token", ("hf_",), r"hf_[A-Za-z0-9]{30,}"),
    Shape("AWS access key id", AWS_ID_PREFIXES, _AWS_ID),
    Shape("Google API key", ("AIza",), r"AIza[0-9A-Za-z_\-]{35}"),
    Shape("Google OAuth client secret", ("GOCSPX-",), r"GOCSPX-[A-Za-z0-9_\-]{20,}"),
    Shape("Slack token", ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-"),
          r"xox[abposre]-[A-Za-z0-9\-]{10,}"),
    Shape("Slack app token", ("xapp-",), r"xapp-[0-9]-[A-Za-z0-9\-]{10,}"),
    Shape("Stripe key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
          r"[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    Shape("Stripe webhook secret", ("whsec_",), r"whsec_[A-Za-z0-9]{24,}"),
    Shape("npm token", ("npm_",), r"npm_[A-Za-z0-9]{36}"),
    Shape("PyPI token", ("pypi-",), r"pypi-[A-Za-z0-9_\-]{50,}"),
    Shape("Databricks token", ("dapi",), r"dapi[0-9a-f]{32}(?:-[0-9]+)?"),
    Shape("DigitalOcean token", ("doo_v1_", "dop_v1_", "dor_v1_"), r"do[opr]_v1_[0-9a-f]{64}"),
    Shape("Docker Hub token", ("dckr_pat_",), r"dckr_pat_[A-Za-z0-9_\-]{20,}"),
    Shape("Shopify token", ("shpat_", "shpss_", "shpca_", "shppa_"),
          r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    Shape("Replicate token", ("r8_",), r"r8_[A-Za-z0-9]{30,}"),
    Shape("Groq key", ("gsk_",), r"gsk_[A-Za-z0-9]{40,}"),
    Shape("Perplexity key", ("pplx-",), r"pplx-[A-Za-z0-9]{40,}"),
    Shape("Google OAuth token", ("ya29.",), r"ya29\.[0-9A-Za-z_\-]{20,}", word=False),
    Shape("SendGrid key", ("SG.",), r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
          word=False),
    Shape("JSON Web Token", ("eyJ",),
          r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", word=False),
    Shape("Slack webhook", ("hooks.slack.com/",),
          r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]+",
          word=False),
    Shape("Discord webhook", ("/api/webhooks/",),
          r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/"
          r"[A-Za-z0-9_\-]+", word=False),
)

# A token is a whole word: no letter, digit, `_` or `-` may touch it on either side, so a
# path segment like `mask-...` or `shelf_...` never looks like `sk-...` or `hf_...`.
_BEFORE = r"(?<![A-Za-z0-9_\-])"
_AFTER = r"(?![A-Za-z0-9_\-])"

# One-word tokens: the scan finds the words that start with a known prefix (the prefixes
# grouped by first letter: Python's regex engine tries an alternation branch by branch), then
# checks the whole word against the shapes.
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_WORD_SHAPES = tuple(shape for shape in PROVIDER_TOKENS if shape.word)
_WORD_PREFIXES = tuple(prefix for shape in _WORD_SHAPES for prefix in shape.prefixes)


def _by_first_letter(prefixes: tuple[str, ...]) -> str:
    groups: dict[str, list[str]] = {}
    for prefix in sorted(set(prefixes), key=len, reverse=True):
        groups.setdefault(prefix[0], []).append(re.escape(prefix[1:]))
    return "|".join(f"{re.escape(first)}(?:{'|'.join(rests)})" for first, rests in groups.items())


_WORD_CANDIDATE = re.compile(f"(?:{_by_first_letter(_WORD_PREFIXES)})" + r"[A-Za-z0-9_\-]*")
_WORD_TOKEN = lazy_pattern("|".join(f"(?:{shape.pattern})" for shape in _WORD_SHAPES))
# The others are searched for only when one of their prefixes is in the text.
_OTHER_TOKENS = tuple((shape.prefixes, lazy_pattern(_BEFORE + shape.pattern + _AFTER))
                      for shape in PROVIDER_TOKENS if not shape.word)
PREFIXES = tuple(prefix for shape in PROVIDER_TOKENS for prefix in shape.prefixes)
# A token cut short by a report's line limit (`sk-proj-abc...`) has lost its length but not
# its prefix: a known prefix, 8 or more letters and digits, and an ellipsis.
_CUT_PREFIXES = sorted({*_WORD_PREFIXES, "sk-proj-", "sk-ant-", "sk-svcacct-", "sk-admin-"},
                       key=len, reverse=True)
_CUT_TOKEN = lazy_pattern(_BEFORE + "(?:" + "|".join(map(re.escape, _CUT_PREFIXES)) + ")"
                        r"[A-Za-z0-9]{8}[A-Za-z0-9_\-]*(?=\.\.\.|\u2026)")

# An AWS access key id and the 40-character secret key that travels with it on the same line
# (`aws configure list`, a credentials file flattened into a log line). The secret must mix
# cases or hold `/` or `+`: a 40-character git hash next to a key id stays.
_AWS_SECRET = r"(?=[A-Za-z0-9/+]*[A-Z/+])(?=[A-Za-z0-9/+]*[a-z])[A-Za-z0-9/+]{40}"
_AWS_KEY_PAIR = lazy_pattern(
    rf"{_BEFORE}{_AWS_ID}(?![A-Za-z0-9])"
    rf"(?P<gap>[^\n]{{0,80}}?)(?<![A-Za-z0-9/+])(?P<secret>{_AWS_SECRET})(?![A-Za-z0-9/+=])")


def mask_tokens(text: str, mask: str) -> str:
    """Replace every provider token in `text` by `mask`, and the AWS secret key next to an
    AWS key id."""
    words = [m for m in _WORD_CANDIDATE.finditer(text)
             if (m.start() == 0 or text[m.start() - 1] not in _WORD_CHARS)
             and _WORD_TOKEN().fullmatch(m[0])]
    if any(m[0].startswith(AWS_ID_PREFIXES) for m in words):
        paired = _AWS_KEY_PAIR().sub(lambda m: f"{mask}{m['gap']}{mask}", text)
        if paired != text:
            return mask_tokens(paired, mask)
    if words:
        out, last = [], 0
        for m in words:
            out += [text[last:m.start()], mask]
            last = m.end()
        out.append(text[last:])
        text = "".join(out)
    if "..." in text or "\u2026" in text:
        text = _CUT_TOKEN().sub(mask, text)
    for prefixes, pattern in _OTHER_TOKENS:
        if any(prefix in text for prefix in prefixes):
            text = pattern().sub(mask, text)
    return text


# PEM private keys, PGP private key blocks. A block cut short (a report keeps only the tail of
# stderr, the head of an evidence line) is masked down to its last base64 line.
_NEWLINE = r"[ \t]*(?:\r?\n|\\n)"  # a real one, or `\n` in a JSON string
PRIVATE_KEY_BLOCK = lazy_pattern(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----"
    rf"(?:[\s\S]*?-----END (?P=label)-----|(?:{_NEWLINE}(?:{_NEWLINE})?[ \t]*"
    r"(?:[A-Za-z\-]+: [^\n]*|[A-Za-z0-9+/=]+))*)")

# `Authorization: Bearer <token>` is taken care of by its name; a bearer token quoted alone
# (`-H "Bearer ..."`, an exception message) is recognised by the word in front of it.
BEARER = lazy_pattern(r"(?<![A-Za-z0-9_\-])([Bb]earer[ \t]+|BEARER[ \t]+)"
                    r"([A-Za-z0-9\-._~+/]{16,}=*)")
