"""`python -m numdoctor.core.stacks._pystack_json PID`: pystack's view of a process, as JSON.

pystack (Bloomberg) reads Python and native stacks of a live process, including threads that
never ran Python (OpenMP and BLAS pools). It resolves symbols on demand, which makes it about
twice as fast as py-spy on processes that map very large libraries (PyTorch), and slower on
small ones; the dump ladder picks between the two. The output uses py-spy's `dump --json`
schema (threads, frames innermost first, `module` set on native frames) so one parser reads
both.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _python(frame: Any) -> dict[str, Any]:
    code = frame.code
    return {"name": code.scope, "filename": code.filename, "line": code.location.lineno,
            "module": None}


def _native(frame: Any) -> dict[str, Any]:
    return {"name": frame.symbol, "filename": frame.path, "line": frame.linenumber,
            "module": frame.library or frame.path}


def _frames(thread: Any) -> list[dict[str, Any]]:
    from pystack.types import NativeFrame, frame_type

    eval_kind, ignore = NativeFrame.FrameType.EVAL, NativeFrame.FrameType.IGNORE
    natives = thread.native_frames or []
    entries = sum(1 for f in thread.all_frames if f.is_entry)
    evals = sum(1 for f in natives if frame_type(f, thread.python_version) == eval_kind)
    frames: list[dict[str, Any]] = []  # outermost first, as pystack lists them
    current = thread.first_frame
    if natives and (evals == entries or current is None):
        for native in natives:
            kind = frame_type(native, thread.python_version)
            if kind == eval_kind and current is not None:
                frames.append(_python(current))
                current = current.next
                while current is not None and not current.is_entry:
                    if not current.is_shim:
                        frames.append(_python(current))
                    current = current.next
            elif kind != ignore:
                frames.append(_native(native))
    else:  # the stacks cannot be interleaved: Python frames only
        frames = [_python(f) for f in thread.frames]
    frames.reverse()
    return frames


def main() -> int:
    from pystack.engine import NativeReportingMode, get_process_threads

    pid = int(sys.argv[1])
    threads = []
    for thread in get_process_threads(pid, stop_process=True,
                                      native_mode=NativeReportingMode.ALL):
        threads.append({
            "thread_id": None, "os_thread_id": thread.tid, "thread_name": thread.name,
            "active": None, "owns_gil": bool(thread.holds_the_gil),
            "frames": _frames(thread),
        })
    json.dump(threads, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
