"""Names shared by the collectors, kept import-free for the start-up path."""

# Import names, in the canonical order used when nothing is named on the command line.
KNOWN_FRAMEWORKS = (
    "numpy", "scipy", "sklearn", "numexpr", "numba", "torch", "tensorflow", "jax", "jaxlib",
    "xgboost", "lightgbm", "cupy", "pandas",
)

# Submodules that `numdoctor check` imports by default after their framework, because the
# framework's own import does not load the native runtime a program gets from them:
# `import scipy` loads no BLAS; scipy.linalg (and everything built on it) loads SciPy's
# BLAS/LAPACK. The other frameworks load theirs on import: numpy (numpy.linalg is imported
# by numpy itself), sklearn (its OpenMP runtime, through sklearn.utils), torch, tensorflow,
# jax (jaxlib's XLA), xgboost and lightgbm (their libraries and OpenMP), numexpr. numba
# picks its threading layer (OpenMP, TBB or its own) on the first parallel call only, which
# an import cannot do for it: name the layer with --import (numba.np.ufunc.omppool) to see it.
DEFAULT_SUBMODULES = {
    "scipy": ("scipy.linalg",),
}
