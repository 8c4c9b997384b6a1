"""Stacks of a hung test, and the explanation of a crashed one.

The same machinery as `numdoctor run` (numdoctor.supervise): the dump ladder (a faulthandler
dump requested by signal, then py-spy with native frames), the faulthandler parser, the crash
classifier that names the culprit and its package, and the knowledge base of messages
("OMP: Error #15" -> OMP002). This module only adapts it to one test's subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass, field

from numdoctor.findings import Finding

# Real-time signals are rarely used by programs or libraries (unlike SIGUSR1/2); the same
# choice as `numdoctor run`, so a test run under `numdoctor run pytest ...` keeps one meaning.
DUMP_SIGNAL = signal.SIGRTMAX - 5


def faulthandler_path(run_dir: str, pid: int) -> str:
    """Where the subprocess `pid` writes its faulthandler output (crashes and dumps)."""
    return os.path.join(run_dir, f"fh-{pid}.txt")


# Frames of pytest, pluggy and this plugin between the test and the interpreter's entry: the
# same in every dump, and forty lines long.
_HARNESS = re.compile(r"[\\/](?:_pytest|pluggy)[\\/]|[\\/]numdoctor[\\/]pytest_plugin[\\/]|"
                      r"[\\/](?:pytest|py\.test)$|[\\/]pytest[\\/]__main__\.py$|^<frozen runpy>$")
_FRAME_LINE = re.compile(r'^\s+File "(?P<file>[^"]*)", line ')


def is_harness(path: str) -> bool:
    return bool(_HARNESS.search(path))


def without_harness(text: str) -> str:
    """Stack text (faulthandler's or the formatted py-spy one) without pytest's own frames."""
    out: list[str] = []
    dropped, indent = 0, ""
    for line in text.splitlines():
        match = _FRAME_LINE.match(line)
        if match and is_harness(match["file"]):
            dropped += 1
            indent = line[:len(line) - len(line.lstrip())]
            continue
        if dropped:
            out.append(f"{indent}... {dropped} frame(s) of pytest omitted")
            dropped = 0
        out.append(line)
    if dropped:
        out.append(f"{indent}... {dropped} frame(s) of pytest omitted")
    return "\n".join(out)


@dataclass
class Stacks:
    python: str = ""  # faulthandler's dump of every thread
    native: str = ""  # py-spy's Python + native frames, formatted
    notes: list[str] = field(default_factory=list)  # why something is missing


def dump_stacks(run_dir: str, pid: int, *, armed: bool) -> Stacks:
    """All-thread stacks of the live process `pid` (its faulthandler must write to
    `faulthandler_path(run_dir, pid)` and catch DUMP_SIGNAL when `armed`)."""
    from numdoctor.supervise.report import format_stacks
    from numdoctor.supervise.stacks import Dumper, Target

    stacks = Stacks()
    if not armed:
        stacks.notes.append("no faulthandler dump: the test's process had not started the "
                            "test yet (still starting up)")
    dumper = Dumper(run_dir, DUMP_SIGNAL)
    result = dumper.dump([Target(pid, python=True, dumpable=armed)], tool_timeout=10.0,
                         faulthandler_wait=2.0)[pid]
    stacks.python = without_harness(result.faulthandler_text.strip())
    if result.native:
        stacks.native = without_harness(format_stacks(result))
    else:
        stacks.notes.extend(note for note in result.notes if "sitecustomize" not in note)
    return stacks


@dataclass
class CrashInfo:
    summary: str  # "was killed by SIGSEGV (...) in string_at (...) [pkg]", "exited with ..."
    findings: list[Finding]  # the crash itself first, then what its output explains
    traceback: str  # faulthandler's text for the crash ("" when there was none)


def explain_crash(run_dir: str, pid: int, wait_status: int, *, command: str, output: str,
                  kernel_events: list) -> CrashInfo:
    """Why the process `pid` died, from its wait status, its faulthandler file, what it
    printed (captured stdout/stderr) and the kernel log."""
    from numdoctor.supervise.classify import from_wait_status
    from numdoctor.supervise.diagnose import Death, crash_finding
    from numdoctor.supervise.stacks import last_dump, parse_faulthandler

    exit_ = from_wait_status(wait_status)
    try:
        with open(faulthandler_path(run_dir, pid), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        text = ""
    traceback = last_dump(text).strip() if "Fatal Python error" in text else ""
    fatal, threads = parse_faulthandler(traceback) if traceback else ("", [])
    for thread in threads:
        thread.frames = [f for f in thread.frames if not is_harness(f.file)]
    traceback = without_harness(traceback)
    related = message_findings(output)
    if exit_.signal is None and not fatal:
        summary = (f"exited with status {exit_.code} without reporting a result (os._exit() "
                   "or a C library calling exit() inside the test?)")
        return CrashInfo(summary, related, traceback)
    flags: set[str] = set()
    if exit_.signal == signal.SIGILL:
        from numdoctor.core.isa import cpu_flags

        flags = cpu_flags()
    death = Death(pid, exit_.signal, role="main", command=command, exit=exit_, fatal=fatal,
                  threads=threads, kernel=kernel_events)
    finding = crash_finding(death, interpreters=(os.path.realpath(sys.executable),),
                            flags=flags, related=related)
    title = finding.title
    if title.startswith("The program "):
        title = "The test's process " + title[len("The program "):]
    finding = Finding(finding.code, finding.severity, title, finding.evidence, finding.why,
                      finding.fix, finding.where)
    summary = title.removeprefix("The test's process ")
    return CrashInfo(summary, [finding, *related], traceback)


def message_findings(output: str) -> list[Finding]:
    """Findings for the messages the numerical stack prints before it dies."""
    if not output:
        return []
    from numdoctor.supervise.messages import Context, MessageScanner, findings

    scanner = MessageScanner()
    scanner.feed(output.encode("utf-8", "replace"))
    scanner.finish()
    return findings(scanner.hits, Context(main_pid=0))


class KernelEvents:
    """What the kernel logs about crashing processes (the faulting library), when readable."""

    def __init__(self) -> None:
        self._log = None

    def start(self) -> None:
        if self._log is None:
            from numdoctor.core.kmsg import KernelLog

            self._log = KernelLog()

    def for_pid(self, pid: int) -> list:
        return self._log.for_pid(pid) if self._log is not None else []

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
