"""How the run diagnoses phrase what they saw: sizes, stacks folded to one line, where a
thread waits. Shared by every rules.run module so that reports read the same everywhere."""

from __future__ import annotations

from numdoctor.core.facts import ProcView
from numdoctor.core.stacks.model import Frame, ProcessStacks, ThreadStack
from numdoctor.rules.run.culprit import is_plumbing

FRAMES_SHOWN = 8


def mib(n: float | None) -> str:
    if n is None:
        return "?"
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


def chain(frames: list[Frame], limit: int = FRAMES_SHOWN) -> str:
    """'innermost ← caller ← …' with consecutive frames of one library folded."""
    labels: list[str] = []
    for frame in frames:
        label = frame.label()
        if labels and labels[-1] == label:
            continue
        labels.append(label)
    shown = labels[:limit]
    if len(labels) > limit:
        shown.append("…")
        shown.append(labels[-1])
    return " ← ".join(shown)


def main_thread(pid: int, stacks: ProcessStacks | None) -> ThreadStack | None:
    if stacks is None or not stacks.threads:
        return None
    for thread in stacks.threads:
        if thread.native_id == pid:
            return thread
    for thread in stacks.threads:
        if thread.name == "MainThread":
            return thread
    # faulthandler lists the newest thread first and the main thread last.
    return stacks.threads[-1]


def where_waiting(frames: list[Frame], interpreters: tuple[str, ...]) -> str:
    """'blocked in futex_wait (libc.so.6), inside GOMP_barrier (libgomp.so.1) [torch 2.13.0],
    called from <module> (x.py:9)'."""
    python_at = next((i for i, f in enumerate(frames) if f.kind == "python"), len(frames))
    natives = [f for f in frames[:python_at] if f.kind == "native" and f.file]
    parts = []
    if natives:
        parts.append(f"blocked in {natives[0].label()}")
        owned = next((f for f in natives if not is_plumbing(f.file, interpreters)), None)
        if owned is not None:
            owner = owned.package
            text = f"inside {owned.label()}" + (f" [{owner}]" if owner else "")
            if owned is natives[0]:
                parts[0] = f"blocked {text}"
            else:
                parts.append(text)
    if python_at < len(frames):
        label = frames[python_at].label()
        parts.append(f"called from {label}" if parts else f"in {label}")
    return ", ".join(parts) or "(no frames)"


def process_lines(views: list[ProcView], stacks: dict[int, ProcessStacks], window: float,
                   interpreters: tuple[str, ...]) -> list[str]:
    lines = []
    for view in views:
        cpu = "?" if view.cpu is None else f"{view.cpu:.0%} CPU"
        thread = main_thread(view.pid, stacks.get(view.pid))
        where = where_waiting(thread.frames, interpreters) if thread else "no stack available"
        lines.append(f"{view.label()}: {cpu} over the last {window:g} s, {where}")
    return lines
