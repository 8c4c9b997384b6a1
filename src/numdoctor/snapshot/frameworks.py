"""The numerical frameworks present in the process: version, BLAS build, thread settings.

Only modules already in `sys.modules` are looked at, and only through calls that neither
import new modules of weight nor initialise devices: collecting must not change the process.

Each framework's own thread pools (torch's intra-op and inter-op, TensorFlow's, XLA's CPU
pool, numba's, numexpr's) are described as `ThreadPool` dicts: the size the framework will
use, whether the program or the environment chose it, and the knob that changes it.
"""

from __future__ import annotations

import os
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
        pools = _POOLS.get(name)
        if pools is not None:
            try:
                info["pools"] = pools(module, info["details"])
            except Exception as exc:
                info["details"]["pools_error"] = f"{type(exc).__name__}: {exc}"
        found.append(info)
    return found


def _schedulable_cpus() -> int | None:
    """What TensorFlow and XLA size their pools to by default (tsl::port::MaxParallelism)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _positive_env(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


def _pool(name: str, size: int | None, *, configured: bool, source: str, knob: str,
          started: bool | None = None, runs_on: str = "") -> dict[str, Any]:
    """A ThreadPool as a plain dict. `runs_on` is a library family here ("openmp": the
    pool is the framework's OpenMP runtime's); the snapshot assembly resolves it to the
    path of that library."""
    return {"name": name, "size": size, "configured": configured, "source": source,
            "knob": knob, "started": started, "runs_on": runs_on}


def _thread_env(*names: str) -> str:
    """`NAME=value` of the first of `names` that is set, or ""."""
    for name in names:
        if os.environ.get(name, "").strip():
            return f"{name}={os.environ[name].strip()}"
    return ""


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


def _torch_pools(torch: ModuleType, details: dict[str, Any]) -> list[dict[str, Any]]:
    # get_num_interop_threads() reports the default size without creating the pool.
    backend = str(details.get("parallel_backend", ""))
    intra_env = _thread_env("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return [
        _pool("intra-op", details.get("num_threads"), configured=bool(intra_env),
              source=intra_env or "torch.get_num_threads()",
              knob="torch.set_num_threads(n)",
              runs_on="openmp" if backend.lower().startswith("openmp") else ""),
        _pool("inter-op", details.get("num_interop_threads"), configured=False,
              source="torch.get_num_interop_threads()",
              knob="torch.set_num_interop_threads(n)"),
    ]


def _tensorflow(tf: ModuleType) -> dict[str, Any]:
    details: dict[str, Any] = {}
    sysconfig = getattr(tf, "sysconfig", None)
    if sysconfig is not None and hasattr(sysconfig, "get_build_info"):
        build = dict(sysconfig.get_build_info())
        details["build"] = {
            k: build[k] for k in ("is_cuda_build", "is_rocm_build", "cuda_version",
                                  "cudnn_version") if k in build
        }
    # Not tf.config.threading.get_*(): they build the context's ConfigProto, which lists
    # the physical devices first (initialising CUDA on a GPU machine). The values the
    # program set are attributes of the eager context, when it exists.
    context = _tf_context()
    for key, attribute in (("intra_op_threads", "_intra_op_parallelism_threads"),
                           ("inter_op_threads", "_inter_op_parallelism_threads")):
        details[key] = getattr(context, attribute, None) or 0
    details["context_initialized"] = getattr(context, "_context_handle", None) is not None
    return details


def _tf_context() -> Any:
    module = sys.modules.get("tensorflow.python.eager.context")
    return getattr(module, "_context", None)


def _tensorflow_pools(tf: ModuleType, details: dict[str, Any]) -> list[dict[str, Any]]:
    """TensorFlow's two Eigen pools: each op's own work (intra-op) and independent ops side
    by side (inter-op). Both default to every schedulable CPU (tsl::port::MaxParallelism)
    and are created with the eager context."""
    started = bool(details.get("context_initialized"))
    pools = []
    for name, key, variable, setter in (
            ("intra-op", "intra_op_threads", "TF_NUM_INTRAOP_THREADS",
             "set_intra_op_parallelism_threads"),
            ("inter-op", "inter_op_threads", "TF_NUM_INTEROP_THREADS",
             "set_inter_op_parallelism_threads")):
        by_program = details.get(key) or 0
        by_env = _positive_env(variable)
        if by_program > 0:
            size, source = by_program, f"tf.config.threading.{setter}({by_program})"
        elif by_env:
            size, source = by_env, f"{variable}={by_env}"
        else:
            size = _schedulable_cpus()
            source = f"default: the {size} schedulable CPU(s)"
        pools.append(_pool(name, size, configured=bool(by_program > 0 or by_env),
                           source=source, started=started,
                           knob=f"tf.config.threading.{setter}(n) or {variable}=n"))
    return pools


def _jax_pools(jax: ModuleType, details: dict[str, Any]) -> list[dict[str, Any]]:
    """XLA's CPU client runs computations on an Eigen pool of DefaultThreadPoolSize()
    threads: $PJRT_NPROC, else $NPROC, else the schedulable CPUs; created with the backend."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(bridge, "_backends", None)
    started = "cpu" in backends if isinstance(backends, dict) else None
    for variable in ("PJRT_NPROC", "NPROC"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit():
            return [_pool("XLA CPU", max(1, int(value)), configured=True,
                          source=f"{variable}={value}", started=started,
                          knob="PJRT_NPROC=n before JAX starts its CPU backend")]
    size = _schedulable_cpus()
    return [_pool("XLA CPU", size, configured=False,
                  source=f"default: the {size} schedulable CPU(s)", started=started,
                  knob="PJRT_NPROC=n before JAX starts its CPU backend")]


def _numba_pools(numba: ModuleType, details: dict[str, Any]) -> list[dict[str, Any]]:
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    started = bool(getattr(parallel, "_is_initialized", False)) if parallel else False
    layer = str(details.get("threading_layer") or "")
    source = _thread_env("NUMBA_NUM_THREADS")
    return [_pool("parallel", details.get("num_threads"), configured=bool(source),
                  source=source or "numba.config.NUMBA_NUM_THREADS", started=started,
                  knob="NUMBA_NUM_THREADS=n (numba.set_num_threads(n) uses fewer)",
                  runs_on="openmp" if layer == "omp" else "")]


def _numexpr_pools(ne: ModuleType, details: dict[str, Any]) -> list[dict[str, Any]]:
    source = _thread_env("NUMEXPR_NUM_THREADS", "OMP_NUM_THREADS")
    return [_pool("virtual machine", details.get("num_threads"), configured=bool(source),
                  source=source or "numexpr.get_num_threads()",
                  knob="numexpr.set_num_threads(n) or NUMEXPR_NUM_THREADS=n")]


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


_POOLS: dict[str, Callable[[ModuleType, dict[str, Any]], list[dict[str, Any]]]] = {
    "torch": _torch_pools,
    "tensorflow": _tensorflow_pools,
    "jax": _jax_pools,
    "numba": _numba_pools,
    "numexpr": _numexpr_pools,
}

_DETAILS: dict[str, Callable[[ModuleType], dict[str, Any]]] = {
    "numpy": _numpy,
    "scipy": _scipy,
    "torch": _torch,
    "tensorflow": _tensorflow,
    "jax": _jax,
    "numba": _numba,
    "numexpr": _numexpr,
}
