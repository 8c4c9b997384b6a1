"""Reading frames the same way everywhere: which frames belong to a process, which are the
user's, and how a frame is named whatever tool took it.

py-spy names a method `Condition.wait` (the code's qualified name), faulthandler and pystack
`wait`; a frozen module has no path; a forked child's stack continues into the parent's frames
that called `fork()`. These helpers hide such differences from the analysis.
"""

from __future__ import annotations

import os
import re

from numdoctor.core.stacks.model import Frame

_STDLIB = re.compile(r"[\\/]lib[\\/]python\d+(?:\.\d+)?t?[\\/](?!.*(?:site|dist)-packages)")
_SITE = re.compile(r"[\\/](?:site|dist)-packages[\\/]")
_INJECTED = os.path.join("numdoctor", "core", "inject", "sitecustomize.py")
# Below these frames, a forked child's stack is its parent's history (the code that forked).
_FORK_POINTS = (("stdlib:multiprocessing/popen_fork.py", "_launch"),
                ("stdlib:multiprocessing/forkserver.py", "_serve_one"))


def path_of(frame: Frame) -> str:
    return frame.file.replace("\\", "/")


def short(function: str) -> str:
    """'Condition.wait' -> 'wait'; '_exception_logger.<locals>.wrapper' -> 'wrapper'."""
    return function.rsplit(".", 1)[-1]


def is_module(frame: Frame, *suffixes: str) -> bool:
    """Whether a Python frame's file ends with one of `suffixes`
    ("torch/utils/data/dataloader.py"). "stdlib:queue.py" matches the standard library's
    module only (never a program's own queue.py); a bare name matches the file name."""
    if frame.kind != "python" or not frame.file:
        return False
    path = path_of(frame)
    for suffix in suffixes:
        if suffix.startswith("stdlib:"):
            if is_stdlib(frame) and path.endswith("/" + suffix[7:]):
                return True
        elif "/" in suffix:
            if path.endswith("/" + suffix) or path == suffix:
                return True
        elif os.path.basename(path) == suffix:
            return True
    return False


def is_stdlib(frame: Frame) -> bool:
    return bool(frame.file) and (bool(_STDLIB.search(frame.file))
                                 or frame.file.startswith("<frozen "))


def is_library(frame: Frame) -> bool:
    """Installed code: the standard library, site-packages, numdoctor's own hook."""
    return is_stdlib(frame) or bool(_SITE.search(frame.file)) or \
        frame.file.endswith(_INJECTED)


def is_user(frame: Frame) -> bool:
    """A Python frame of the program itself (not a library, not `python -c` glue)."""
    return frame.kind == "python" and bool(frame.file) and not is_library(frame) and \
        not frame.file.startswith("<")


def own_frames(frames: list[Frame]) -> list[Frame]:
    """The frames that are this process's own: without the parent's frames below a
    multiprocessing fork, and without numdoctor's reaping hook (it only forwards a call)."""
    cut = len(frames)
    for index, frame in enumerate(frames):
        if any(is_module(frame, module) and short(frame.function) == function
               for module, function in _FORK_POINTS):
            cut = index
            break
    return [f for f in frames[:cut] if not (f.kind == "python" and f.file.endswith(_INJECTED))]


def python_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.kind == "python"]


_TEMPLATE = re.compile(r"<[^<>]*>")


def native_name(frame: Frame) -> str:
    """A readable native function name: 'tensorflow::data::PrefetchDatasetOp::Dataset::
    Iterator::GetNextInternal(tensorflow::data::IteratorContext*, ...)' -> 'PrefetchDatasetOp::
    Dataset::Iterator::GetNextInternal'."""
    name = frame.function
    if not name or name.startswith("0x"):
        return ""
    for _ in range(4):  # nested templates, innermost first
        stripped = _TEMPLATE.sub("", name)
        if stripped == name:
            break
        name = stripped
    name = name.split("(", 1)[0].split("@", 1)[0].strip()
    parts = [p for p in name.split("::") if p and not p.startswith("lts_") and p not in (
        "tensorflow", "tsl", "absl", "std", "c10d", "c10", "at", "data", "(anonymous namespace)")]
    return "::".join(parts[-4:]) or frame.function.split("(", 1)[0]


def label(frame: Frame) -> str:
    """'score (futures_thread.py:10)' or 'GOMP_parallel (libgomp.so.1)'."""
    if frame.kind == "python":
        return frame.label()
    name = native_name(frame)
    library = os.path.basename(frame.file) if frame.file else "?"
    return f"{name} ({library})" if name else f"[{library}]"


def where(frame: Frame | None) -> str:
    """'file.py:12' for a Python frame."""
    if frame is None:
        return ""
    return f"{os.path.basename(frame.file) or '?'}:{frame.line if frame.line else '?'}"


def chain(frames: list[Frame], limit: int = 8) -> str:
    """'innermost ← caller ← …' with repeats of one library folded."""
    labels: list[str] = []
    for frame in frames:
        text = label(frame)
        if labels and labels[-1] == text:
            continue
        labels.append(text)
    shown = labels[:limit]
    if len(labels) > limit:
        shown += ["…", labels[-1]]
    return " ← ".join(shown)
