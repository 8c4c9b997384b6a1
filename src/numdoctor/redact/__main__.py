"""`python -m numdoctor.redact [--check] [FILE ...]`: the report redaction, for any text.

Without --check: prints the files (or standard input) with their secrets masked, e.g. a log
of the program itself before pasting it next to numdoctor's report. With --check: prints
where secrets would be masked (the lines masked, never the secrets) and exits 1 if there is
any, 0 if there is none.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from numdoctor.redact import redact_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m numdoctor.redact",
        description="Mask the secrets numdoctor masks in its reports (docs/redaction.md).")
    parser.add_argument("--check", action="store_true",
                        help="list the lines that hold a secret (masked) and exit 1 if any")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="files to read (default: standard input)")
    args = parser.parse_args(argv)
    found = 0
    for name in args.files or ["-"]:
        try:
            text = _read(name)
        except OSError as exc:
            print(f"python -m numdoctor.redact: cannot read {name}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        masked = redact_text(text)
        if not args.check:
            sys.stdout.write(masked)
            continue
        for line_number, line in _masked_lines(text, masked):
            found += 1
            print(f"{'<stdin>' if name == '-' else name}:{line_number}: {line}")
    return 1 if found else 0


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    with open(name, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _masked_lines(text: str, masked: str) -> list[tuple[int, str]]:
    """(line number in `text`, masked line) for each line redaction changed."""
    before, after = text.splitlines(), masked.splitlines()
    changed = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, a_start, _a_end, b_start, b_end in matcher.get_opcodes():
        if tag != "equal":
            changed += [(a_start + 1 + i, after[b_start + i]) for i in range(b_end - b_start)]
    return changed


if __name__ == "__main__":
    sys.exit(main())
