"""What the kernel logged about our processes: segfaults, illegal instructions, OOM kills.

The kernel log names what no user-space tool can after the fact: the library that holds the
faulting instruction (with its file offset on recent kernels), the faulting address, the
instruction bytes, and the pid the OOM killer chose. Reading /dev/kmsg needs CAP_SYSLOG or
`kernel.dmesg_restrict=0`; where it is not readable numdoctor says so and does without.

The reader opens /dev/kmsg when supervision starts and skips everything logged before, so only
records written during the run are parsed.
"""

from __future__ import annotations

import errno
import os
import re
from functools import cache

# "python[4321]: segfault at 0 ip 00007f.. sp 00007ff.. error 4 in libc.so.6[167ad8,7fb8..+156000]"
_SEGFAULT = (r"(?P<comm>.+?)\[(?P<pid>\d+)\]: segfault at (?P<addr>[0-9a-f]+) ip (?P<ip>[0-9a-f]+) "
             r"sp [0-9a-f]+ error (?P<error>[0-9a-f]+)(?: in (?P<vma>.*))?")
# "traps: ill[13912] trap invalid opcode ip:5614bb12a12d sp:7fff.. error:0 in ill[112d,5614..+1000]"
_TRAP = (r"traps: (?P<comm>.+?)\[(?P<pid>\d+)\] (?:trap )?(?P<what>[a-z ]+?) ip:(?P<ip>[0-9a-f]+) "
         r"sp:[0-9a-f]+ error:(?P<error>[0-9a-f]+)(?: in (?P<vma>.*))?")
# "in libc.so.6[167ad8,7fb81b644000+156000]" (newer kernels print the file offset first)
_VMA = (r"(?P<file>\S+)\[(?:(?P<offset>[0-9a-f]+),)?(?P<start>[0-9a-f]+)\+"
        r"(?P<size>[0-9a-f]+)\]")
_OOM = (r"(?:Memory cgroup out of memory|Out of memory)[^:]*: Killed process "
        r"(?P<pid>\d+) \((?P<comm>[^)]*)\)(?P<rest>.*)")
_OOM_KILL = r"oom-kill:.*\btask=(?P<comm>[^,]*),pid=(?P<pid>\d+)"
_CODE = r"^Code: (?P<bytes>.*)$"


@cache
def _pattern(source: str) -> re.Pattern[str]:
    # Compiled when the log is first read: the log is opened before the program starts,
    # and nothing that is not needed then may delay it.
    return re.compile(source)


class KernelEvent:
    """One kernel log record about a process."""

    def __init__(self, pid: int, kind: str, message: str, *, ip: int | None = None,
                 address: int | None = None, detail: dict[str, str] | None = None) -> None:
        self.pid = pid
        self.kind = kind  # "segfault", "invalid opcode", "general protection fault", "oom-kill"
        self.message = message
        self.ip = ip
        self.address = address  # the faulting data address (segfault)
        self.library = ""  # basename of the mapping that holds ip, as the kernel prints it
        self.file_offset: int | None = None  # offset of ip in that file, when given
        self.code = b""  # instruction bytes from the "Code:" record, faulting one first
        self.detail = detail or {}

    def __repr__(self) -> str:
        return (f"KernelEvent(pid={self.pid}, kind={self.kind!r}, library={self.library!r}, "
                f"file_offset={self.file_offset}, address={self.address})")


class KernelLog:
    """Records logged since construction, parsed on demand."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.unavailable = ""
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            self.fd = None
            self.unavailable = (f"the kernel log (/dev/kmsg) is not readable ({exc.strerror}); "
                                "it would name the faulting library and OOM victims")
        self.events: list[KernelEvent] = []
        # A segfault record is followed by a separate "Code:" record.
        self._pending: KernelEvent | None = None

    def poll(self) -> list[KernelEvent]:
        """Read and parse whatever was logged since the last poll."""
        if self.fd is None:
            return self.events
        while True:
            try:
                record = os.read(self.fd, 16384).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read: skip ahead
                    continue
                break
            if not record:
                break
            _, _, message = record.partition(";")
            message = message.split("\n", 1)[0]
            code = _pattern(_CODE).match(message)
            if code and self._pending is not None:
                self._pending.code = _code_bytes(code.group("bytes"))
                self._pending = None
                continue
            event = parse(message)
            if event is not None:
                self.events.append(event)
            self._pending = event if event is not None and event.kind == "segfault" else None
        return self.events

    def for_pid(self, pid: int) -> list[KernelEvent]:
        return [e for e in self.poll() if e.pid == pid]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def parse(message: str) -> KernelEvent | None:
    match = _pattern(_SEGFAULT).search(message)
    if match:
        event = KernelEvent(int(match["pid"]), "segfault", message, ip=int(match["ip"], 16),
                            address=int(match["addr"], 16))
        _vma(event, match["vma"])
        return event
    match = _pattern(_TRAP).search(message)
    if match:
        event = KernelEvent(int(match["pid"]), match["what"].strip(), message,
                            ip=int(match["ip"], 16))
        _vma(event, match["vma"])
        return event
    match = _pattern(_OOM).search(message)
    if match:
        return KernelEvent(int(match["pid"]), "oom-kill", message,
                           detail={"comm": match["comm"], "rest": match["rest"].strip(" ,")})
    match = _pattern(_OOM_KILL).search(message)
    if match:
        return KernelEvent(int(match["pid"]), "oom-kill", message, detail={"comm": match["comm"]})
    return None


def _vma(event: KernelEvent, text: str | None) -> None:
    if not text:
        return
    match = _pattern(_VMA).search(text)
    if not match:
        return
    event.library = match["file"]
    if match["offset"] is not None:
        event.file_offset = int(match["offset"], 16)


def _code_bytes(text: str) -> bytes:
    """The faulting instruction and what follows ("<62> f3 7d ..." -> b"\\x62\\xf3\\x7d...")."""
    words = text.split()
    for index, word in enumerate(words):
        if word.startswith("<") and word.endswith(">"):
            try:
                return bytes(int(w.strip("<>"), 16) for w in words[index:])
            except ValueError:
                return b""
    return b""
