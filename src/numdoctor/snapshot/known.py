"""Names shared by the collectors, kept import-free for the start-up path."""

# Import names, in the canonical order used when nothing is named on the command line.
KNOWN_FRAMEWORKS = (
    "numpy", "scipy", "sklearn", "numexpr", "numba", "torch", "tensorflow", "jax", "jaxlib",
    "xgboost", "lightgbm", "cupy", "pandas",
)
