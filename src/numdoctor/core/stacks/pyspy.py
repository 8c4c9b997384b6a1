"""py-spy and pystack: Python and native frames of every thread, read with ptrace.

py-spy `dump --native --json` gives Python and native frames interleaved, the library of each
native frame, which thread runs and which holds the GIL. pystack (through its Python API, see
`_pystack_json`) does the same and also shows threads that never ran Python; its lazy symbol
lookup makes it about twice as fast on processes that map very large libraries (PyTorch).
Both need ptrace: numdoctor is the tree's ancestor (Yama ptrace_scope 1 allows ancestors), and
its tools are allowed by the PR_SET_PTRACER call of the injected sitecustomize.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from numdoctor.core.procfs import read_maps, yama_ptrace_scope
from numdoctor.core.stacks.model import Frame, ThreadStack


def find_py_spy() -> str | None:
    override = os.environ.get("NUMDOCTOR_PY_SPY")
    if override:
        return override if os.access(override, os.X_OK) else None
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def find_pystack() -> bool:
    """pystack is used through its Python API, from this interpreter."""
    if os.environ.get("NUMDOCTOR_PYSTACK") == "0":
        return False
    import importlib.util

    try:
        return importlib.util.find_spec("pystack") is not None
    except (ImportError, ValueError):
        return False


# Executable code mapped by a process above which pystack is tried before py-spy.
PYSTACK_ABOVE = 150 * 2**20


def code_size(pid: int) -> int:
    """Bytes of executable file mappings of `pid` (a proxy for symbol-loading work)."""
    try:
        return sum(m.end - m.start for m in read_maps(pid)
                   if "x" in m.perms and m.path.startswith("/"))
    except OSError:
        return 0


def parse_py_spy(data: Any, source: str = "py-spy") -> list[ThreadStack]:
    """Threads from py-spy's `dump --json` schema (pystack's output is converted to it)."""
    threads = []
    for item in data if isinstance(data, list) else []:
        frames = []
        for frame in item.get("frames", []):
            module = frame.get("module")
            if module:  # a native frame: `module` is the library
                name = frame.get("name", "")
                frames.append(Frame("native", "" if name in ("???", "??") else name, module))
            elif str(frame.get("name", "")).startswith("0x") and \
                    not str(frame.get("filename") or "").endswith(".py"):
                continue  # an address the unwinder could not place: noise, not a frame
            else:
                line = frame.get("line")
                frames.append(Frame("python", frame.get("name", ""), frame.get("filename", ""),
                                    line if isinstance(line, int) and line > 0 else None))
        thread_id = item.get("thread_id")
        native_id = item.get("os_thread_id")
        active = item.get("active")
        threads.append(ThreadStack(
            id=hex(thread_id) if isinstance(thread_id, int) else str(native_id),
            native_id=native_id,
            name=item.get("thread_name") or "",
            state="" if active is None else ("running" if active else "idle"),
            owns_gil=item.get("owns_gil"),
            frames=frames,
            source=source,
        ))
    return threads


def ptrace_denied(stderr: str) -> bool:
    lowered = stderr.lower()
    return "permission" in lowered or "not permitted" in lowered or "eperm" in lowered


def _error_line(stderr: str) -> str:
    """The line that says what went wrong (py-spy may end with a backtrace's last frame)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    chosen = lines[-1] if lines else "no output"
    for line in lines:
        if line.lower().startswith(("error", "pystack.errors")) or "error:" in line.lower():
            chosen = line
            break
    # py-spy's own advice (sudo) does not apply to a tool started by numdoctor.
    return chosen.split(": Try running again", 1)[0]


def why_tool_failed(tool: str, stderr: str) -> str:
    last = _error_line(stderr)
    if ptrace_denied(stderr):
        scope = yama_ptrace_scope()
        detail = f"Yama ptrace_scope={scope}" if scope is not None else "no Yama restriction"
        return f"{tool} could not attach: ptrace was denied ({detail}): {last}"
    return f"{tool} failed: {last}"


PTRACE_FIX = ("native stacks need ptrace: in a container, run it with the SYS_PTRACE "
              "capability (docker run --cap-add=SYS_PTRACE; Kubernetes: "
              "securityContext.capabilities.add [SYS_PTRACE]) and a seccomp profile that "
              "allows ptrace; on a host with Yama, `sysctl kernel.yama.ptrace_scope=1` lets "
              "numdoctor attach to the processes it started")
