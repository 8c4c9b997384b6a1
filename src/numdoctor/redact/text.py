"""Mask secrets in free text: command lines, stderr, stacks, rendered reports.

Secrets are found by what they are, never by how random they look:

1. provider token shapes and private key blocks (`shapes.py`), anywhere;
2. the password of a URL (`scheme://user:PASSWORD@host`);
3. the word after `Bearer`;
4. the value under a secret name (`names.py`), in each way text puts a value under a name:
   `--flag=value`, `--flag value`, `"--flag", "value"` (an argv list), `NAME=value`
   (environment, keyword arguments, gdb's `fn (password=0x... "value")`, URL queries),
   `NAME: value` (headers, YAML, py-spy's locals), `"name": value` (JSON, dict reprs), and
   `user:password` after `-u`/`--user`/`--auth`.

A value is masked whole and replaced by `[REDACTED]` (quotes kept), so a report stays
readable and a masked text masks to itself. A multi-segment absolute path under a secret name
(`--key /etc/ssl/key.pem`, `PASSWORD_FILE=...` aside) says where the secret is, not what it
is, and stays.
"""

from __future__ import annotations

import functools
import heapq
import re

from numdoctor.redact.names import Kind, is_secret_name, is_userinfo_flag, kind_of
from numdoctor.redact.shapes import BEARER, PREFIXES, PRIVATE_KEY_BLOCK, lazy_pattern, mask_tokens

REDACTED = "[REDACTED]"

# The scheme is not needed to find the password: `://user:PASSWORD@`. A password may hold
# `?`, `#` and `@` unencoded (people write them so); the last `@` before the host ends it.
# A URL cut short by a line limit (`://alice:s3cr...`) is masked up to the ellipsis.
_URL_PASSWORD = lazy_pattern(r"://[^\s/?#@:\"'<>]*:(?:(?P<password>[^\s/\"'<>]+)@"
                           r"|(?P<cut>[^\s/\"'<>@]+?)(?=\.\.\.|\u2026))")

# The scan for named values runs on an ASCII-lower-cased copy of the text (same length, same
# offsets), where a few literal words find the candidates fast; each hit is then widened to
# the whole name around it. A name followed by `=`, `: ` or a quoted key's `:`...
_TRIGGER_WORDS = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "cookie", "dsn",
                  "sas", "conn", "sig")
# (Factored by first letter: Python's regex engine tries an alternation branch by branch.)
_NAMED_HINT = re.compile(r"(?:p(?:ass|wd)|s(?:ecret|as|ig)|token|key|c(?:red|ookie|onn)|auth|dsn)"
                         r"[\w.\-]*(?=[ \t]*=|:[ \t]|[\"'][ \t]*:)")
# ... or an option followed by its value, `=` or an argv list's `", "`.
_FLAG_HINT = re.compile(r"-(?:-?[a-z][\w.\-]*(?=[ \t=]|[\"']\s*,))")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Is there anything at all to look at? (Most strings of a report are paths and names.)
_MAYBE = re.compile("|".join(re.escape(word) for word in (
    *_TRIGGER_WORDS, "-u", "://", "bearer", "private key",
    *{prefix.lower() for prefix in PREFIXES})))
_SHORT = 4096
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NAME_TAIL = re.compile(r"[\w.\-]*")
_NAME = re.compile(r"-{0,2}[A-Za-z_][\w.\-]*")

_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
# A string literal, possibly behind a C pointer (gdb: `password=0x5555 "hunter2"`) or a
# Python prefix (b'...').
_LITERAL = re.compile(rf"(?:0x[0-9a-fA-F]+[ \t]+)?[bBrRuU]?(?P<q>{_QUOTED})")
# A shell word: runs of unquoted characters and quoted strings up to whitespace.
# `<` only when it does not open a closing HTML tag (`--password x</td>`).
_WORD = re.compile(rf"(?:{_QUOTED}|[^\s\"'<]|<(?!/[A-Za-z])|[\"'](?=\S))+")
_WORD_CONTINUES = re.compile(r"[^\s,;:)\]}&<\"']")
_QUERY_VALUE = re.compile(r"[^\s&;#\"'<>]+")
_JSON_VALUE = re.compile(r"[^\s,}\]]+")
_LINE_REST = re.compile(r"(?:[^\n<]|<(?!/[A-Za-z]))*")
_SPACES = re.compile(r"[ \t]*")
_LIST_SEPARATOR = re.compile(r"\s*,\s*(?=[\"'])")
_PATH = re.compile(r"(?:~|\.{1,2})?(?:/[\w.@+\-]+){2,}/?")
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def redact_text(text: str) -> str:
    """`text` with every secret it carries replaced by `[REDACTED]`; nothing else changes."""
    if len(text) <= _CACHED:
        return _redact_short(text)
    return _redact(text)


# A report's strings repeat (the file and function names of thousands of stack frames).
_CACHED = 256


@functools.lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    if not _MAYBE.search(text.translate(_LOWER)):
        return text
    return _redact(text)


def _redact(text: str) -> str:
    if len(text) < _SHORT and not _MAYBE.search(text.translate(_LOWER)):
        return text
    if "PRIVATE KEY" in text:
        text = PRIVATE_KEY_BLOCK().sub(REDACTED, text)
    text = mask_tokens(text, REDACTED)
    if "://" in text:
        text = _URL_PASSWORD().sub(_url_password, text)
    if "earer" in text or "EARER" in text:
        text = BEARER().sub(lambda m: m[1] + REDACTED, text)
    return _NamedValues(text).redact()


def _url_password(match: re.Match[str]) -> str:
    start, end = match.span("password" if match["password"] is not None else "cut")
    whole = match[0]
    offset = match.start()
    return whole[:start - offset] + REDACTED + whole[end - offset:]


class _NamedValues:
    """One scan over the text for values under secret names; replacements applied at the
    end, left to right, none overlapping."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans: list[tuple[int, int, str]] = []

    def redact(self) -> str:
        text = self.text
        lower = text.translate(_LOWER)
        hits = heapq.merge((m.start() for m in _NAMED_HINT.finditer(lower)),
                           (m.start() for m in _FLAG_HINT.finditer(lower)))
        resume = 0
        for hit in hits:
            if hit < resume:
                continue
            start = hit
            while start > 0 and text[start - 1] in _NAME_CHARS:
                start -= 1
            end = _end(_NAME_TAIL, text, hit)
            resume = max(end, self._named(start, end))
        if not self.spans:
            return text
        out, last = [], 0
        for start, end, replacement in self.spans:
            out += [text[last:start], replacement]
            last = end
        out.append(text[last:])
        return "".join(out)

    def _named(self, start: int, end: int) -> int:
        """Mask the value after the name in text[start:end], if it has one; returns where
        the scan goes on."""
        text = self.text
        found = _NAME.search(text, start, end)
        if found is None:
            return end
        name_start = found.start()
        name = found[0].rstrip(".-")
        end = name_start + len(name)
        if not name or (name.startswith("-") and name_start != start):
            return end  # `x--password`: not a flag
        before = text[name_start - 1] if name_start else ""
        after = text[end:end + 1]
        flag = name.startswith("-")
        if before in ("\"", "'") and after == before:
            return self._quoted_name(name, end + 1, before)
        gap = _end(_SPACES, text, end)
        if text[gap:gap + 1] == "=" and (gap == end or not flag):
            return self._assignment(name, gap, before, spaced=gap > end)
        if flag and gap > end:
            return self._flag_value(name, gap)
        if after == ":" and not flag and text[end + 1:end + 2] in (" ", "\t"):
            if not is_secret_name(name):
                return end + 1
            value = _end(_SPACES, text, end + 1)
            if before in ("\"", "'"):  # a header inside a quoted argument: -H 'X-Api-Key: x'
                close = _closing_quote(text, value, before)
                if close > value:
                    return self._mask(value, close)
            return self._value(value, rest_of_line=True)
        return end

    def _quoted_name(self, name: str, pos: int, quote: str) -> int:
        """`"password": "x"` (JSON, a dict repr) or `"--password", "x"` (an argv list)."""
        text = self.text
        colon = _end(_SPACES, text, pos)
        if text[colon:colon + 1] == ":" and not name.startswith("-"):
            if is_secret_name(name):
                return self._value(_end(_SPACES, text, colon + 1), json=True)
            return pos
        separator = _LIST_SEPARATOR.match(text, pos)
        if separator and name.startswith("-") and is_secret_name(name, Kind.FLAG):
            return self._value(separator.end(), literal_only=True)
        return pos

    def _assignment(self, name: str, equals: int, before: str, *, spaced: bool) -> int:
        text = self.text
        if text[equals + 1:equals + 2] == "=":
            return equals + 2  # `==`, a comparison
        spaced = spaced or text[equals + 1:equals + 2] in (" ", "\t")
        value = _end(_SPACES, text, equals + 1)
        if name.startswith("-") and is_userinfo_flag(name):
            return self._userinfo(value)
        kind = Kind.QUERY if before in ("?", "&") else kind_of(name)
        if not is_secret_name(name, kind):
            return value
        if spaced:  # `password = "x"` in source code; `token = make_token()` is no secret
            return self._value(value, literal_only=True)
        if before in ("?", "&", ";"):
            return self._value(value, query=True)
        if before in ("\"", "'"):  # inside a quoted item: `'--password=x'`, `"TOKEN=x"`
            close = _closing_quote(text, value, before)
            if close > value:
                return self._mask(value, close)
        return self._value(value)

    def _flag_value(self, name: str, value: int) -> int:
        """`--password hunter2`: the next word, unless it is another option."""
        text = self.text
        if value >= len(text) or text[value] in "-\n\r":
            return value
        if is_userinfo_flag(name):
            return self._userinfo(value)
        if not is_secret_name(name, Kind.FLAG):
            return value
        return self._value(value)

    def _userinfo(self, pos: int) -> int:
        """`alice:hunter2` -> `alice:[REDACTED]`; `1000:1000` (a uid:gid) stays."""
        word = _WORD.match(self.text, pos)
        if word is None:
            return pos
        end = _trim(self.text, pos, word.end())
        user, colon, password = self.text[pos:end].partition(":")
        if not colon or not password or password.isdigit() or password.startswith(REDACTED):
            return end
        return self._mask(pos + len(user) + 1, end)

    def _value(self, pos: int, *, json: bool = False, rest_of_line: bool = False,
               literal_only: bool = False, query: bool = False) -> int:
        text = self.text
        if pos >= len(text) or text.startswith(REDACTED, pos):
            return pos
        literal = _LITERAL.match(text, pos)
        if literal is not None and not _WORD_CONTINUES.match(text, literal.end()):
            q_start, q_end = literal.span("q")
            if text.startswith(REDACTED, q_start + 1):
                return q_end
            if looks_like_path(text[q_start + 1:q_end - 1]):
                return q_end
            return self._mask(q_start + 1, q_end - 1)
        if literal_only:
            return pos
        if query:
            match = _QUERY_VALUE.match(text, pos)
        elif json:
            match = _JSON_VALUE.match(text, pos)
        elif rest_of_line:
            match = _LINE_REST.match(text, pos)
        else:
            match = _WORD.match(text, pos)
        if match is None:
            return pos
        value_end = match.end()
        if rest_of_line:
            value_end = pos + len(match[0].rstrip())
        elif not query:
            value_end = _trim(text, pos, value_end)
        if value_end <= pos or looks_like_path(text[pos:value_end]) or (
                json and text[pos:value_end] in ("null", "true", "false")):
            return max(value_end, pos)
        return self._mask(pos, value_end)

    def _mask(self, start: int, end: int) -> int:
        if end > start and not self.text.startswith(REDACTED, start):
            self.spans.append((start, end, REDACTED))
        return end


def _end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where a pattern that matches the empty string ends, matched at `pos`."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def _closing_quote(text: str, start: int, quote: str) -> int:
    """Where the quoted item that `start` is in ends, on this line; -1 if it does not."""
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    pos = start
    while True:
        pos = text.find(quote, pos, line_end)
        if pos < 0 or text[pos - 1] != "\\":
            return pos
        pos += 1


def _trim(text: str, start: int, end: int) -> int:
    """Give back the punctuation of the surrounding text: `(... --password x)`, `'x',`."""
    while end - start > 1:
        last = text[end - 1]
        opener = _CLOSERS.get(last)
        if opener is not None and text.count(opener, start, end) < text.count(last, start, end):
            end -= 1
        elif last in ",;" or (last in "\"'" and text.count(last, start, end) % 2):
            end -= 1
        else:
            break
    return end


def looks_like_path(value: str) -> bool:
    """An absolute path of two or more segments: where a secret is, not what it is."""
    return _PATH.fullmatch(value) is not None
