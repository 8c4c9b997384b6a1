"""Environment variables that change how the numerical stack behaves."""

from __future__ import annotations

import os
from collections.abc import Mapping

_PREFIXES = (
    "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "GOTO_", "BLIS_", "FLEXIBLAS", "VECLIB_",
    "NUMEXPR_", "NUMBA_", "CUDA_", "NVIDIA_", "CUBLAS_", "CUDNN_", "NCCL_", "TF_", "XLA_",
    "JAX_", "PYTORCH_", "TORCH_", "OPENMP_", "ONEDNN_", "DNNL_", "TBB_",
)
_NAMES = (
    "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE",
    "PYTHONFAULTHANDLER", "PYTHONMALLOC", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "VIRTUAL_ENV",
    "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE",
    "PBS_NUM_PPN", "NSLOTS", "LSB_DJOB_NUMPROC",
)

# Variables that set the size of some thread pool; THR002 asks whether any of them is set.
THREAD_LIMIT_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "OMP_THREAD_LIMIT",
)


def pick_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that matter, as they are (secrets included: redact before showing)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(_PREFIXES) or k in _NAMES}


def collect_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that matter, secrets redacted, sorted by name."""
    from numdoctor.redact import redact_environment

    return dict(sorted(redact_environment(pick_environment(environ)).items()))
