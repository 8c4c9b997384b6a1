"""NVIDIA GPU state through NVML (`libnvidia-ml.so.1`, shipped with the driver), via ctypes.

Read at the moment of a hang or crash (and every few seconds while the program runs, so a
crash has a recent reading): utilisation and memory per GPU, and which of our processes hold
GPU memory. A GPU at 100 % while the host looks stuck means "waiting for the GPU"; an idle GPU
with our process holding memory means the host side is stuck. Without the library (no NVIDIA
driver) nothing is read and the report says so. NVML calls can block on a wedged driver, so
each reading runs in a daemon thread with a deadline.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

_LIBRARY = "libnvidia-ml.so.1"


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class _ProcessInfo(ctypes.Structure):  # nvmlProcessInfo_t (v2/v3 layout)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


@dataclass
class GpuState:
    """One GPU at one reading: utilization, memory, the processes on it."""

    index: int
    name: str = ""
    utilization: int | None = None  # percent of time a kernel ran, over the last sample period
    memory_utilization: int | None = None
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes of GPU memory

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["processes"] = {str(k): v for k, v in self.processes.items()}
        return data


@dataclass
class GpuReading:
    """Every GPU at one moment, or why none could be read."""

    available: bool
    gpus: list[GpuState] = field(default_factory=list)
    note: str = ""  # why nothing was read


class Nvml:
    """A loaded and initialised NVML, or the reason there is none."""

    def __init__(self) -> None:
        self.lib: ctypes.CDLL | None = None
        self.note = ""
        try:
            lib = ctypes.CDLL(_LIBRARY)
        except OSError:
            self.note = f"no NVIDIA GPU: {_LIBRARY} (the driver's NVML) is not installed"
            return
        try:
            init = getattr(lib, "nvmlInit_v2", None) or lib.nvmlInit
            status = init()
        except AttributeError:
            self.note = f"{_LIBRARY} has no nvmlInit"
            return
        if status != 0:
            self.note = f"NVML failed to initialise ({self._error(lib, status)})"
            return
        self.lib = lib

    @staticmethod
    def _error(lib: ctypes.CDLL, status: int) -> str:
        try:
            lib.nvmlErrorString.restype = ctypes.c_char_p
            return str(lib.nvmlErrorString(status).decode())
        except (AttributeError, UnicodeDecodeError):
            return f"status {status}"

    def read(self) -> list[GpuState]:
        lib = self.lib
        if lib is None:
            return []
        count = ctypes.c_uint(0)
        get_count = getattr(lib, "nvmlDeviceGetCount_v2", None) or lib.nvmlDeviceGetCount
        if get_count(ctypes.byref(count)) != 0:
            return []
        by_index = (getattr(lib, "nvmlDeviceGetHandleByIndex_v2", None)
                    or lib.nvmlDeviceGetHandleByIndex)
        states = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if by_index(index, ctypes.byref(handle)) != 0:
                continue
            state = GpuState(index)
            name = ctypes.create_string_buffer(96)
            if lib.nvmlDeviceGetName(handle, name, 96) == 0:
                state.name = name.value.decode(errors="replace")
            util = _Utilization()
            if lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == 0:
                state.utilization, state.memory_utilization = util.gpu, util.memory
            memory = _Memory()
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == 0:
                state.memory_used, state.memory_total = memory.used, memory.total
            state.processes = self._processes(lib, handle)
            states.append(state)
        return states

    @staticmethod
    def _processes(lib: ctypes.CDLL, handle: ctypes.c_void_p) -> dict[int, int]:
        query = (getattr(lib, "nvmlDeviceGetComputeRunningProcesses_v3", None)
                 or getattr(lib, "nvmlDeviceGetComputeRunningProcesses_v2", None))
        if query is None:
            return {}
        count = ctypes.c_uint(64)
        infos = (_ProcessInfo * 64)()
        if query(handle, ctypes.byref(count), infos) != 0:
            return {}
        return {infos[i].pid: infos[i].usedGpuMemory for i in range(min(count.value, 64))}


_nvml: Nvml | None = None
_nvml_lock = threading.Lock()


def read_gpus(timeout: float = 2.0) -> GpuReading:
    """The state of every NVIDIA GPU, or why it could not be read, within `timeout` seconds."""
    result: list[GpuReading] = []

    def work() -> None:
        global _nvml
        with _nvml_lock:
            if _nvml is None:
                _nvml = Nvml()
            nvml = _nvml
            if nvml.lib is None:
                result.append(GpuReading(False, note=nvml.note))
                return
            try:
                result.append(GpuReading(True, nvml.read()))
            except (OSError, AttributeError) as exc:
                result.append(GpuReading(False, note=f"NVML query failed: {exc}"))

    thread = threading.Thread(target=work, name="numdoctor-nvml", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return GpuReading(False, note=f"NVML did not answer within {timeout:g} s (driver stuck?)")
    return result[0]
