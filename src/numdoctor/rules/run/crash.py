"""Deaths by signal: which signal, which thread, which library and package to blame (SIG001-
SIG007), with what the kernel logged (the faulting library and instruction)."""

from __future__ import annotations

import os
import signal

from numdoctor.core import isa
from numdoctor.core.facts import Death
from numdoctor.core.kmsg import KernelEvent
from numdoctor.core.stacks.model import ThreadStack
from numdoctor.core.status import SIGNAL_WORDS, signal_name
from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Rule, Stage, declare
from numdoctor.rules.run._text import chain
from numdoctor.rules.run.culprit import culprit

_FATAL_SIGNALS = {
    "Segmentation fault": signal.SIGSEGV, "Aborted": signal.SIGABRT, "Bus error": signal.SIGBUS,
    "Floating-point exception": signal.SIGFPE, "Floating point exception": signal.SIGFPE,
    "Illegal instruction": signal.SIGILL, "Killed": signal.SIGKILL,
}

_CULPRIT = """
    The culprit is the first native frame of the faulting thread that is not the C library,
    the C++ runtime, the dynamic loader, libffi or the Python interpreter, mapped to the pip
    package that installed it. Where native frames were not available (faulthandler prints
    native frames only from Python 3.14), the innermost Python frame names the module that
    called into native code; the kernel log, when readable, names the library that held the
    faulting instruction.
"""

SIG001 = declare(
    "SIG001", "A process crashed with a segmentation fault (SIGSEGV)", Severity.ERROR,
    f"""
    The process read or wrote memory it does not own: a NULL or dangling pointer, a buffer
    overrun, a stack overflow, or a binary incompatibility (an extension built against another
    version of a library it calls into). numdoctor reports the faulthandler traceback of the
    faulting thread and exits with 139 (128 + 11), like a shell.
    {_CULPRIT}
    **Fix.** Update or reinstall the culprit package so that its binary matches the libraries
    it uses (see the ABI and MSG findings next to this one); report the traceback to the
    package with this report. A crash inside `ctypes` means the program passed a bad pointer.
    """,
    Stage.RUN,
)

SIG002 = declare(
    "SIG002", "A process aborted (SIGABRT)", Severity.ERROR,
    f"""
    Native code called `abort()`: a failed assertion, an uncaught C++ exception
    (`terminate called after throwing…`), glibc's heap-corruption check (`free(): invalid
    pointer`), or a runtime refusing a fatal state (Intel OpenMP's "OMP: Error #15"). The
    message printed just before the abort usually says which: numdoctor recognises the common
    ones and reports them as their own findings. Exit status 134.
    {_CULPRIT}
    **Fix.** Follow the finding for the message printed before the abort.
    """,
    Stage.RUN,
)

SIG003 = declare(
    "SIG003", "A process crashed with a bus error (SIGBUS)", Severity.ERROR,
    f"""
    A memory access the hardware could not complete: most often a memory-mapped file that was
    truncated or removed while mapped (a dataset or model file rewritten underneath a running
    job, an `np.memmap` of a file on a full or vanished disk), or `/dev/shm` running out of
    space (PyTorch DataLoader workers share tensors through it; Docker's default is 64 MB).
    Exit status 135.
    {_CULPRIT}
    **Fix.** Make `/dev/shm` larger (`docker run --shm-size=8g`) or use fewer DataLoader
    workers; never modify a file that a running program has memory-mapped.
    """,
    Stage.RUN,
)

SIG004 = declare(
    "SIG004", "A process died from an arithmetic exception (SIGFPE)", Severity.ERROR,
    f"""
    An integer division by zero or overflow in native code (floating-point errors do not raise
    SIGFPE unless traps were enabled). Exit status 136.
    {_CULPRIT}
    **Fix.** Check the sizes passed to the culprit: an empty array or a zero-sized dimension
    reaching code that divides by it is the usual cause.
    """,
    Stage.RUN,
)

SIG005 = declare(
    "SIG005", "A process executed an illegal instruction (SIGILL)", Severity.ERROR,
    f"""
    The CPU refused an instruction. Almost always a binary built for a newer CPU than this
    one: a wheel or library compiled with `-march=native` or for AVX-512/AVX2 running on a
    CPU without them, or AMX instructions on a CPU or kernel without AMX. numdoctor decodes
    the faulting instruction when the kernel log names it and lists the CPU extensions this
    machine lacks. A `ud2` instruction is different: code that crashes on purpose
    (`__builtin_trap()`, a failed check). Exit status 132.
    {_CULPRIT}
    **Fix.** Install a build of the culprit package for this CPU (the generic pip wheel rather
    than a locally optimised build; on a cluster, build on the oldest node type), or run on a
    machine with the missing extension.
    """,
    Stage.RUN,
)

SIG006 = declare(
    "SIG006", "A process was killed with SIGKILL (not by the OOM killer)", Severity.ERROR,
    """
    SIGKILL cannot be caught, so the program had no chance to say anything. numdoctor found
    no sign of the kernel's OOM killer (no rise of the cgroup `oom_kill` counter, no kernel log
    record), so someone else sent it: a job scheduler enforcing a limit (Slurm, Kubernetes
    after a failed liveness probe), a user, or a watchdog. Exit status 137.

    **Fix.** Look at the scheduler's logs for the job. If memory was involved, the peak RSS in
    the report shows how close the program came to its limit.
    """,
    Stage.RUN,
)

SIG007 = declare(
    "SIG007", "A process was ended by a signal", Severity.WARNING,
    """
    The program's main process (or a worker) was ended by a signal other than the crash
    signals: SIGTERM (a polite stop request: a scheduler, `kill`, a container shutdown),
    SIGHUP (its terminal went away), SIGINT, SIGPIPE (it wrote to a pipe nobody reads), or
    SIGXCPU/SIGXFSZ (a resource limit). numdoctor exits with 128 + the signal number.

    **Fix.** Find out who sent it; for SIGPIPE, whether the reader of the program's output
    exited early (`| head`).
    """,
    Stage.RUN,
)


_SIGNAL_RULES: dict[int, Rule] = {
    signal.SIGSEGV: SIG001, signal.SIGABRT: SIG002, signal.SIGBUS: SIG003,
    signal.SIGFPE: SIG004, signal.SIGILL: SIG005, signal.SIGKILL: SIG006,
}


def faulting_thread(threads: list[ThreadStack]) -> ThreadStack | None:
    return next((t for t in threads if t.current), threads[0] if threads else None)


def _kernel_lines(death: Death, flags: set[str]) -> list[str]:
    lines = []
    for event in death.kernel:
        if event.kind == "oom-kill":
            continue
        text = f"kernel: {event.kind}"
        if event.address is not None:
            text += f" at address {event.address:#x}"
            if event.address < 4096:
                text += " (a NULL pointer dereference)"
        if event.library:
            text += f" in {event.library}"
            if event.file_offset is not None:
                text += f" at file offset {event.file_offset:#x}"
        lines.append(text)
        if event.kind == "invalid opcode":
            lines.extend(_illegal_instruction(event, flags))
    return lines


def _illegal_instruction(event: KernelEvent, flags: set[str]) -> list[str]:
    code = event.code  # the supervisor read it from the library when the log had none
    instruction = isa.decode(code) if code else None
    if instruction is None:
        return []
    if instruction.deliberate:
        return [f"the faulting instruction is {instruction.family}: the program stopped "
                "itself on purpose; this is not a CPU mismatch"]
    lacking = [f for f in instruction.needs if f not in flags]
    line = f"the faulting instruction ({code[:8].hex(' ')}) is {instruction.family}"
    if instruction.needs:
        line += (f"; it needs {' or '.join(instruction.needs)}, which this CPU lacks"
                 if lacking and len(lacking) == len(instruction.needs)
                 else f"; this CPU has {', '.join(f for f in instruction.needs if f in flags)}"
                 " (the instruction may need a sub-extension or OS support it lacks)")
    return [line]


def crash_finding(death: Death, *, interpreters: tuple[str, ...], flags: set[str],
                  related: list[Finding]) -> Finding:
    number = death.signal
    rule_ = _SIGNAL_RULES.get(number, SIG007) if number else SIG007
    thread = faulting_thread(death.threads)
    frames = thread.frames if thread else []
    blamed = culprit(frames, interpreters) if frames else None
    what = death.exit.describe() if death.exit else (death.fatal or "crashed")
    evidence = [f"pid {death.pid} ({death.command}){f' [{death.role}]' if death.role else ''}"
                f" {what}"]
    if death.fatal:
        evidence.append(f"faulthandler: Fatal Python error: {death.fatal}")
    if thread is not None and frames:
        evidence.append(f"faulting thread {thread.id} (innermost first): {chain(frames)}")
    kernel_library = death.kernel_library
    if blamed is None and kernel_library:
        # No stack (a native program): the kernel's record names the faulting library.
        owner = death.kernel_library_package or "installed by no package manager"
        evidence.append(f"culprit: {os.path.basename(kernel_library)} [{owner}] (the library "
                        "that held the faulting instruction, from the kernel log)")
    if blamed is not None:
        evidence.append(f"culprit: {blamed.describe()}")
    evidence += _kernel_lines(death, flags)
    if number == signal.SIGILL:
        evidence.append(f"this CPU: {isa.level(flags)}; lacks "
                        f"{', '.join(isa.missing_above(flags)[:10]) or 'none of those checked'}")
    for finding in related:
        evidence.append(f"printed before the crash: {finding.title} (see {finding.code})")
    if not frames and number in _SIGNAL_RULES and number != signal.SIGKILL:
        evidence.append("no traceback: the process was not a Python process armed by "
                        "numdoctor, or it died before faulthandler could write")
    title = rule_.title
    if blamed is not None:
        shown = (os.path.basename(blamed.library) if blamed.library
                 else blamed.frame.label())
        owner = f" [{blamed.package}]" if blamed.package else ""
        title = f"{_title_signal(number, death)} in {shown}{owner}"
    elif kernel_library:
        owner = death.kernel_library_package
        title = (f"{_title_signal(number, death)} in {os.path.basename(kernel_library)}"
                 + (f" [{owner}]" if owner else ""))
    else:
        title = _title_signal(number, death)
    return rule_.finding(evidence, title=title, where=f"pid {death.pid}"
                         + (f" ({death.role})" if death.role else ""))


def _title_signal(number: int | None, death: Death) -> str:
    if number is None:
        return f"Fatal Python error: {death.fatal}" if death.fatal else "The process crashed"
    words = SIGNAL_WORDS.get(number, "")
    who = "The program" if death.role == "main" else f"Process {death.pid}"
    return f"{who} was killed by {signal_name(number)}" + (f" ({words})" if words else "")


def signal_from_fatal(fatal: str) -> int | None:
    for words, number in _FATAL_SIGNALS.items():
        if fatal.startswith(words):
            return number
    return None
