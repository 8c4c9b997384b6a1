"""The numerical frameworks present in the process: version, BLAS build, thread settings.

Only modules already in `sys.modules` are looked at, and only through calls that neither
import new modules of weight nor initialise devices: collecting must not change the process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from numdoctor.snapshot.known import KNOWN_FRAMEWORKS


def collect_frameworks() -> list[dict[str, Any]]:
    """FrameworkInfo fields as plain dicts (this runs in the inspected process; the owning
    distribution is looked up where the snapshot is assembled)."""
    found = []
    for name in KNOWN_FRAMEWORKS:
        module = sys.modules.get(name)
        if module is None:
            continue
        info: dict[str, Any] = {"name": name, "version": str(getattr(module, "__version__", "")),
                                "path": getattr(module, "__file__", "") or "", "details": {}}
        detail = _DETAILS.get(name)
        if detail is not None:
            try:
                info["details"] = detail(module)
            except Exception as exc:  # a framework's own API failing is a fact, not our crash
                info["details"] = {"error": f"{type(exc).__name__}: {exc}"}
        found.append(info)
    return found


def _numpy(np: ModuleType) -> dict[str, Any]:
    details: dict[str, Any] = {}
    config = getattr(getattr(np, "__config__", None), "CONFIG", None)
    if isinstance(config, dict):
        deps = config.get("Build Dependencies", {})
        details["blas"] = _dep(deps.get("blas"))
        details["lapack"] = _dep(deps.get("lapack"))
    core = sys.modules.get("numpy._core._multiarray_umath") or sys.modules.get(
        "numpy.core._multiarray_umath"
    )
    if core is not None:
        features = getattr(core, "__cpu_features__", {})
        details["cpu_baseline"] = list(getattr(core, "__cpu_baseline__", []))
        details["cpu_dispatch_enabled"] = [
            k for k in getattr(core, "__cpu_dispatch__", []) if features.get(k)
        ]
    return details


def _scipy(sp: ModuleType) -> dict[str, Any]:
    config = getattr(getattr(sp, "__config__", None), "CONFIG", None)
    if not isinstance(config, dict):
        return {}
    deps = config.get("Build Dependencies", {})
    return {"blas": _dep(deps.get("blas")), "lapack": _dep(deps.get("lapack"))}


def _dep(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        return {}
    keep = ("name", "version", "openblas configuration", "found")
    return {k: entry[k] for k in keep if k in entry}


def _torch(torch: ModuleType) -> dict[str, Any]:
    details: dict[str, Any] = {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "cuda_build": getattr(torch.version, "cuda", None),
        "hip_build": getattr(torch.version, "hip", None),
        "debug_build": bool(getattr(torch.version, "debug", False)),
    }
    backends = getattr(torch, "backends", None)
    if backends is not None:
        details["mkl"] = bool(backends.mkl.is_available())
        details["openmp"] = bool(backends.openmp.is_available())
        details["mkldnn"] = bool(backends.mkldnn.is_available())
    cuda = getattr(torch, "cuda", None)
    if cuda is not None:
        # is_initialized() does not touch the driver; device counts only once it is up.
        details["cuda_initialized"] = bool(cuda.is_initialized())
        if details["cuda_initialized"]:
            details["cuda_devices"] = [
                cuda.get_device_name(i) for i in range(cuda.device_count())
            ]
    try:
        show = torch.__config__.show()
    except Exception:
        show = ""
    for line in show.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("- Build settings:"):
            settings = line.split(":", 1)[1]
            for pair in settings.split(", "):
                key, _, value = pair.partition("=")
                if key.strip() in ("BLAS_INFO", "LAPACK_INFO", "USE_OPENMP", "USE_MKL",
                                   "USE_CUDA", "USE_CUDNN", "TORCH_VERSION", "CUDA_VERSION"):
                    details[key.strip().lower()] = value.strip()
        elif "Math Kernel Library Version" in line or line.startswith("- LAPACK is enabled"):
            details.setdefault("build_notes", []).append(line.lstrip("- "))
    try:
        parallel = torch.__config__.parallel_info()
        backend = [x for x in parallel.splitlines() if x.startswith("ATen parallel backend")]
        if backend:
            details["parallel_backend"] = backend[0].split(":", 1)[1].strip()
    except Exception:
        pass
    return details


def _tensorflow(tf: ModuleType) -> dict[str, Any]:
    details: dict[str, Any] = {}
    sysconfig = getattr(tf, "sysconfig", None)
    if sysconfig is not None and hasattr(sysconfig, "get_build_info"):
        build = dict(sysconfig.get_build_info())
        details["build"] = {
            k: build[k] for k in ("is_cuda_build", "is_rocm_build", "cuda_version",
                                  "cudnn_version") if k in build
        }
    threading = getattr(getattr(tf, "config", None), "threading", None)
    if threading is not None:
        details["intra_op_threads"] = threading.get_intra_op_parallelism_threads()
        details["inter_op_threads"] = threading.get_inter_op_parallelism_threads()
    return details


def _jax(jax: ModuleType) -> dict[str, Any]:
    jaxlib = sys.modules.get("jaxlib")
    return {"jaxlib": str(getattr(jaxlib, "__version__", "")) if jaxlib else ""}


def _numba(numba: ModuleType) -> dict[str, Any]:
    config = getattr(numba, "config", None)
    return {
        "num_threads": getattr(config, "NUMBA_NUM_THREADS", None),
        "threading_layer": getattr(config, "THREADING_LAYER", None),
    }


def _numexpr(ne: ModuleType) -> dict[str, Any]:
    return {"max_threads": getattr(ne, "MAX_THREADS", None),
            "num_threads": ne.get_num_threads() if hasattr(ne, "get_num_threads") else None}


_DETAILS: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "numpy": _numpy,
    "scipy": _scipy,
    "torch": _torch,
    "tensorflow": _tensorflow,
    "jax": _jax,
    "numba": _numba,
    "numexpr": _numexpr,
}
