"""gdb `thread apply all bt`: native frames of every thread of a non-Python process."""

from __future__ import annotations

import os
import re
import shutil

from numdoctor.core.procfs import MapEntry
from numdoctor.core.stacks.model import Frame, ThreadStack
from numdoctor.core.stacks.scan import CodeRanges


def find_gdb() -> str | None:
    override = os.environ.get("NUMDOCTOR_GDB")
    if override is not None:  # "" turns gdb off (the stack scan is used instead)
        return override if override and os.access(override, os.X_OK) else None
    return shutil.which("gdb")


_GDB_THREAD = re.compile(r'^Thread \d+ \(Thread (?P<id>0x[0-9a-f]+) \(LWP (?P<tid>\d+)\)'
                         r'(?: "(?P<name>[^"]*)")?\)')
_GDB_LWP = re.compile(r"^Thread \d+ \(LWP (?P<tid>\d+)\)")
_GDB_FRAME = re.compile(r"^#\d+\s+(?:(?P<addr>0x[0-9a-f]+) in )?(?P<fn>\S+) \(")
_GDB_FROM = re.compile(r" from (?P<lib>\S+)$")


def parse_gdb(text: str, maps: list[MapEntry]) -> list[ThreadStack]:
    threads: list[ThreadStack] = []
    current: ThreadStack | None = None
    index = CodeRanges.of_maps(maps)
    for line in text.splitlines():
        match = _GDB_THREAD.match(line) or _GDB_LWP.match(line)
        if match:
            groups = match.groupdict()
            current = ThreadStack(id=groups.get("id") or groups["tid"],
                                  native_id=int(groups["tid"]),
                                  name=groups.get("name") or "", source="gdb")
            threads.append(current)
            continue
        match = _GDB_FRAME.match(line)
        if match and current is not None:
            function = match["fn"]
            library = ""
            found = _GDB_FROM.search(line)
            if found:
                library = found["lib"]
            elif match["addr"]:
                library = index.library(int(match["addr"], 16))
            current.frames.append(Frame("native", "" if function == "??" else function,
                                        library))
    return threads
