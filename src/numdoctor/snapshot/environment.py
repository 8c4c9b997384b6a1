"""Environment variables that change how the numerical stack behaves."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Prefixes that a library of the numerical stack documents for its own variables. A prefix
# shared with unrelated tools is not one: Terraform's TF_CLI_*, TF_VAR_*, TF_LOG... are not
# TensorFlow's, so TensorFlow's variables are listed by their own narrower prefixes and names.
_PREFIXES = (
    "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "GOTO_", "BLIS_", "FLEXIBLAS", "VECLIB_",
    "NUMEXPR_", "NUMBA_", "NPY_", "SCIPY_", "SKLEARN_", "LOKY_", "JOBLIB_",
    "CUDA_", "NVIDIA_", "CUBLAS_", "CUBLASLT_", "CUDNN_", "NCCL_", "HIP_", "ROCR_", "HSA_",
    "TF_CPP_", "TF_GPU_", "TF_CUDNN_", "TF_XLA_", "TF_ENABLE_", "TF_NUM_", "TF_FORCE_",
    "TF_DETERMINISTIC_", "XLA_", "JAX_", "PJRT_", "PYTORCH_", "TORCH_", "ONEDNN_", "DNNL_",
    "TBB_",
)
_NAMES = (
    "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE",
    "PYTHONUSERBASE", "PYTHONFAULTHANDLER", "PYTHONMALLOC", "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV", "VIRTUAL_ENV",
    "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE",
    "PBS_NUM_PPN", "NSLOTS", "LSB_DJOB_NUMPROC",
    # TensorFlow, by exact name where its prefix would catch other tools' variables.
    "TF2_BEHAVIOR", "TF_USE_LEGACY_KERAS", "TF_USE_CUDNN_AUTOTUNE", "TF_CUDA_PATHS",
    # XLA's CPU pool size (xla/pjrt/utils.cc DefaultThreadPoolSize).
    "NPROC",
)

# Variables that set the size of some thread pool; THR002 asks whether any of them is set.
THREAD_LIMIT_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "OMP_THREAD_LIMIT",
)


def is_relevant(name: str) -> bool:
    """Whether the numerical stack reads this variable (by exact name or documented prefix)."""
    return name.startswith(_PREFIXES) or name in _NAMES


def pick_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that matter, as they are (secrets included: redact before showing).

    A value that is not valid UTF-8 (os.environ keeps its bytes as surrogates) is shown with
    those bytes escaped, `\\xff`, so that it can be printed and sent as JSON.
    """
    environ = os.environ if environ is None else environ
    return {_printable(k): _printable(v) for k, v in environ.items() if is_relevant(k)}


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def collect_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that matter, secrets redacted, sorted by name."""
    from numdoctor.redact import redact_environment

    return dict(sorted(redact_environment(pick_environment(environ)).items()))
