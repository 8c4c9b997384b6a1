"""Operations ("canaries") that start a library's thread pools and finish fast when healthy.

A canary is source code, not a function: every scenario runs in an interpreter of its own
(a fresh one, or a fork of one that has imported the scenario's modules and nothing else),
and the same text goes into the standalone reproduction script users attach to bug reports.
Sizes are large enough for OpenBLAS/MKL/libgomp to use their pools (a few hundred rows) and
small enough to take well under a second on one core.

To add one: `register(Canary("pkg.op", "pkg", "...code using `pkg`..."))`; `module` is the
import that must succeed first; the code may assume it is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Canary:
    name: str  # "<framework>.<operation>", e.g. "numpy.svd"
    module: str  # import name the operation needs
    code: str  # statements; may use the module under its import name
    description: str = ""

    @property
    def framework(self) -> str:
        return self.name.split(".", 1)[0]


CANARIES: dict[str, Canary] = {}


def register(canary: Canary) -> Canary:
    if canary.name in CANARIES:
        raise ValueError(f"canary {canary.name} registered twice")
    CANARIES[canary.name] = canary
    return canary


_NP = "rng = numpy.random.default_rng(0)\n"
for _canary in (
    Canary("numpy.matmul", "numpy", _NP + "a = rng.standard_normal((400, 400))\n(a @ a).sum()",
           "400x400 float64 matrix product (BLAS dgemm)"),
    Canary("numpy.svd", "numpy", _NP + "numpy.linalg.svd(rng.standard_normal((300, 300)))",
           "300x300 SVD (LAPACK gesdd)"),
    Canary("numpy.inv", "numpy",
           _NP + "numpy.linalg.inv(rng.standard_normal((400, 400)) + 400 * numpy.eye(400))",
           "400x400 inverse (LAPACK getrf/getri)"),
    Canary("numpy.eigh", "numpy",
           _NP + "a = rng.standard_normal((300, 300))\nnumpy.linalg.eigh(a + a.T)",
           "300x300 symmetric eigendecomposition (LAPACK syevd)"),
    Canary("scipy.lu", "scipy.linalg",
           "import numpy\nscipy.linalg.lu_factor(numpy.random.default_rng(0)"
           ".standard_normal((400, 400)))", "400x400 LU through SciPy's own OpenBLAS"),
    Canary("scipy.svd", "scipy.linalg",
           "import numpy\nscipy.linalg.svd(numpy.random.default_rng(0)"
           ".standard_normal((300, 300)))", "300x300 SVD through SciPy's own OpenBLAS"),
    Canary("torch.mm", "torch",
           "torch.manual_seed(0)\na = torch.randn(400, 400)\ntorch.mm(a, a).sum().item()",
           "400x400 float32 matrix product (MKL on libgomp)"),
    Canary("torch.svd", "torch",
           "torch.manual_seed(0)\ntorch.linalg.svd(torch.randn(300, 300))",
           "300x300 SVD"),
    Canary("tensorflow.matmul", "tensorflow",
           "a = tensorflow.random.normal((400, 400), seed=0)\n"
           "float(tensorflow.reduce_sum(tensorflow.matmul(a, a)))",
           "400x400 matrix product (Eigen/oneDNN threads)"),
    Canary("tensorflow.svd", "tensorflow",
           "tensorflow.linalg.svd(tensorflow.random.normal((300, 300), seed=0))",
           "300x300 SVD"),
    Canary("tensorflow.inv", "tensorflow",
           "a = tensorflow.random.normal((300, 300), seed=0)\n"
           "tensorflow.linalg.inv(a + 300.0 * tensorflow.eye(300))", "300x300 inverse"),
    Canary("jax.matmul", "jax",
           "import jax.numpy as jnp\na = jax.random.normal(jax.random.PRNGKey(0), (400, 400))\n"
           "float(jnp.sum(a @ a))", "400x400 matrix product (XLA CPU)"),
    Canary("jax.svd", "jax",
           "import jax.numpy as jnp\n"
           "jnp.linalg.svd(jax.random.normal(jax.random.PRNGKey(0), (300, 300)))"
           "[1].block_until_ready()", "300x300 SVD"),
    Canary("sklearn.kmeans", "sklearn.cluster",
           "import numpy\nx = numpy.random.default_rng(0).standard_normal((4000, 8))\n"
           "sklearn.cluster.KMeans(n_clusters=8, n_init=1, random_state=0).fit(x)",
           "KMeans on 4000x8 points (OpenMP in scikit-learn's Cython)"),
):
    register(_canary)


def canaries_for(modules: list[str]) -> list[Canary]:
    """The canaries of the given frameworks (top-level names), in registry order."""
    tops = {m.split(".")[0] for m in modules}
    return [c for c in CANARIES.values() if c.framework in tops]
