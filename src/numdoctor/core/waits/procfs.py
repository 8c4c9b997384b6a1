"""Small readers of /proc for one process or thread. Every reader returns an empty value when
the process or thread is gone or unreadable: a tree changes while it is being read."""

from __future__ import annotations

import os
import struct

from numdoctor.core.procfs import thread_ids

__all__ = ["JOB_VARIABLES", "environ_job", "fd_access", "fd_targets", "read_mem",
           "read_pollfds", "read_text", "read_timespec", "syscall", "thread_ids",
           "thread_stat"]

# The variables that name a process's part in a distributed job. Only their values are read:
# an environment holds secrets, these do not.
JOB_VARIABLES = frozenset({
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
    "ROLE_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCH_DISTRIBUTED_DEBUG",
    "NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_ASYNC_ERROR_HANDLING", "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
    "JAX_PROCESS_ID", "JAX_NUM_PROCESSES", "TF_CONFIG_TASK_INDEX", "HOROVOD_RANK",
    "HOROVOD_SIZE",
})


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def thread_stat(pid: int, tid: int) -> tuple[str, int, str] | None:
    """(state letter, utime + stime in clock ticks, comm) of one thread, or None if gone."""
    raw = read_text(f"/proc/{pid}/task/{tid}/stat")
    if not raw:
        return None
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()
    try:
        return fields[0], int(fields[11]) + int(fields[12]), comm
    except (IndexError, ValueError):
        return None


def syscall(pid: int, tid: int) -> tuple[int | None, tuple[int, ...], bool]:
    """(number, arguments, running) from /proc/<pid>/task/<tid>/syscall.

    `running` is True while the thread is on a CPU (or in user space); the number is None then
    and when the file could not be read (another user's process, a kernel without it).
    """
    text = read_text(f"/proc/{pid}/task/{tid}/syscall").split()
    if not text:
        return None, (), False
    if text[0] == "running":
        return None, (), True
    try:
        number = int(text[0])
    except ValueError:
        return None, (), False
    if number < 0:  # -1: blocked, but not in a system call (a page fault)
        return None, (), False
    try:
        args = tuple(int(word, 16) for word in text[1:7])
    except ValueError:
        args = ()
    return number, args, False


def environ_job(pid: int) -> dict[str, str]:
    """The job variables (JOB_VARIABLES) of a process's initial environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    job = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            name = key.decode("ascii", "replace")
            if name in JOB_VARIABLES:
                job[name] = value.decode("utf-8", "replace")[:200]
    return job


def fd_targets(pid: int) -> dict[int, str]:
    """{fd: what /proc/<pid>/fd/<fd> points to} ("pipe:[123]", "socket:[456]", a path)."""
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return {}
    targets = {}
    for name in names:
        try:
            targets[int(name)] = os.readlink(f"{base}/{name}")
        except (OSError, ValueError):
            continue
    return targets


def fd_access(pid: int, fd: int) -> int | None:
    """O_RDONLY (0), O_WRONLY (1) or O_RDWR (2) of an open fd, from /proc/<pid>/fdinfo."""
    for line in read_text(f"/proc/{pid}/fdinfo/{fd}").splitlines():
        if line.startswith("flags:"):
            try:
                return int(line.split()[1], 8) & 3
            except (IndexError, ValueError):
                return None
    return None


def read_mem(pid: int, address: int, size: int) -> bytes:
    """`size` bytes of process memory at `address` (b"" when not readable)."""
    if address <= 0 or size <= 0:
        return b""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.pread(fd, size, address)
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_timespec(pid: int, address: int) -> float | None:
    """A `struct timespec` (64-bit time_t and long) in another process, as seconds."""
    raw = read_mem(pid, address, 16)
    if len(raw) != 16:
        return None
    seconds, nanoseconds = struct.unpack("=qq", raw)
    return float(seconds + nanoseconds / 1e9)


def read_pollfds(pid: int, address: int, count: int, limit: int = 64) -> list[int]:
    """The fds of a `struct pollfd` array (int fd; short events; short revents)."""
    count = min(count, limit)
    raw = read_mem(pid, address, 8 * count)
    fds = []
    for index in range(len(raw) // 8):
        fd, _events, _revents = struct.unpack_from("=ihh", raw, 8 * index)
        if fd >= 0:
            fds.append(fd)
    return fds
