"""faulthandler's text: every thread's Python stack, and the fatal error that ended a process.

faulthandler is armed in every Python process of a supervised tree (numdoctor's injected
sitecustomize): on a fatal signal it writes the crashing process's stacks; on numdoctor's dump
signal it writes every thread's stack, from C, so it answers while C code holds the GIL.
"""

from __future__ import annotations

import re

from numdoctor.core.stacks.model import Frame, ThreadStack

_FH_THREAD = re.compile(
    r"^(?P<current>Current thread|Thread) (?P<id>0x[0-9a-fA-F]+)(?: \[(?P<name>[^\]]*)\])?"
    r" \(most recent call first\):$")
_FH_STACK = re.compile(r"^Stack \(most recent call first\):$")
_FH_FRAME = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+|\?\?\?) in (?P<fn>.*)$')
# Python >= 3.14 adds the native stack of the faulting thread.
_FH_NATIVE_HEAD = re.compile(r"^Current thread's C stack trace \(most recent call first\):$")
_FH_NATIVE = re.compile(r'^  Binary file "(?P<file>[^"]*)"(?:, at (?P<sym>\S+?))? '
                        r'\[(?P<addr>0x[0-9a-fA-F]+)\]$')
_FH_FATAL = re.compile(r"^Fatal Python error: (?P<what>.*)$")


def parse_faulthandler(text: str) -> tuple[str, list[ThreadStack]]:
    """(fatal error or "", threads) from faulthandler output, innermost frames first."""
    fatal = ""
    threads: list[ThreadStack] = []
    current: ThreadStack | None = None
    native: ThreadStack | None = None
    for line in text.splitlines():
        match = _FH_FATAL.match(line)
        if match:
            fatal = match["what"].strip()
            current = native = None
            continue
        match = _FH_THREAD.match(line)
        if match:
            current = ThreadStack(id=match["id"].lower(), name=match["name"] or "",
                                  current=match["current"] == "Current thread",
                                  source="faulthandler")
            threads.append(current)
            native = None
            continue
        if _FH_STACK.match(line):
            current = ThreadStack(id="?", current=True, source="faulthandler")
            threads.append(current)
            continue
        if _FH_NATIVE_HEAD.match(line):
            native = next((t for t in threads if t.current), None)
            current = None
            continue
        match = _FH_FRAME.match(line)
        if match and current is not None:
            lineno = match["line"]
            current.frames.append(Frame("python", match["fn"], match["file"],
                                        int(lineno) if lineno.isdigit() else None))
            continue
        match = _FH_NATIVE.match(line)
        if match and native is not None:
            symbol = (match["sym"] or "").split("+", 1)[0]
            # Native frames sit below the Python ones they were called from; faulthandler
            # prints them separately, so they go first (innermost) in our combined list.
            native.frames.insert(sum(f.kind == "native" for f in native.frames),
                                 Frame("native", symbol or match["addr"], match["file"]))
            continue
        if not line.strip():
            current = None if current is not None and current.frames else current
    return fatal, threads


def last_dump(text: str) -> str:
    """The most recent dump in a file that may hold several (one per signal)."""
    starts = [m.start() for m in re.finditer(
        r"^(?:Fatal Python error: |Current thread 0x|Thread 0x|Stack \()", text, re.M)]
    if not starts:
        return text
    # A dump is a run of thread blocks; a new one begins where a "Fatal" line or the first
    # thread block after a gap of non-dump text starts. Dumps we request are separated by
    # the offsets we record, so in practice this only matters for fatal errors.
    fatal = [m.start() for m in re.finditer(r"^Fatal Python error: ", text, re.M)]
    return text[fatal[-1]:] if fatal else text[starts[0]:]
