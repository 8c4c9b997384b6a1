"""GPU state at a hang or a crash (GPU001), read through NVML by the supervisor."""

from __future__ import annotations

from numdoctor.core.gpu import GpuReading
from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Stage, declare
from numdoctor.rules.run._text import mib

GPU001 = declare(
    "GPU001", "GPU state when the program hung or crashed", Severity.INFO,
    """
    Utilisation and memory of every NVIDIA GPU (read through NVML) at the moment numdoctor
    detected the hang or the crash, and which processes of the program held GPU memory.

    **How to read it.** A GPU at high utilisation while the host side looks stuck means the
    program is waiting for the GPU (a long or stuck kernel, a collective operation waiting for
    another rank). A GPU at 0 % with memory held by the program means the host side is stuck
    (a deadlock in Python or native host code): read the host stacks.
    """,
    Stage.RUN,
)


def gpu_finding(reading: GpuReading | None, *, moment: str, tree_pids: set[int],
                host_idle: bool | None) -> Finding | None:
    if reading is None or not reading.available or not reading.gpus:
        return None
    evidence = []
    busy = False
    ours = False
    for gpu in reading.gpus:
        util = "?" if gpu.utilization is None else f"{gpu.utilization}%"
        line = (f"GPU {gpu.index} ({gpu.name}): {util} busy, memory {mib(gpu.memory_used)} of "
                f"{mib(gpu.memory_total)}")
        held = {pid: used for pid, used in gpu.processes.items() if pid in tree_pids}
        if held:
            ours = True
            line += "; held by " + ", ".join(f"pid {p} ({mib(b)})" for p, b in held.items())
        evidence.append(line)
        busy = busy or (gpu.utilization or 0) >= 50
    if moment == "hang" and host_idle is not None:
        if busy:
            title = "The GPU was busy while the host made no progress: waiting for the GPU"
        elif ours:
            title = "The GPU was idle while holding the program's memory: the host is stuck"
        else:
            title = "The GPU was idle when the program hung"
    else:
        title = f"GPU state at the {moment}"
    return GPU001.finding(evidence, title=title)
