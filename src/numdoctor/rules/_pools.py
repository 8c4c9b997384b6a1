"""The thread pools of one process, each counted once, for the oversubscription rules.

A pool is a runtime's set of worker threads: an OpenMP runtime's, a BLAS implementation's
own (OpenBLAS or BLIS on pthreads, MKL on TBB), a framework's (torch's inter-op pool,
TensorFlow's intra-op and inter-op pools, XLA's CPU pool, numba's, numexpr's). Interface
libraries have none; a BLAS threaded through OpenMP and torch's intra-op pool on OpenMP are
the OpenMP runtime's pool, not pools of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from numdoctor.rules._evidence import VENDOR_NAMES, describe_library
from numdoctor.snapshot.model import Snapshot

# A BLAS on these threading layers runs on the loaded OpenMP runtime's pool.
_OPENMP_LAYERS = frozenset({"openmp", "gnu", "intel"})
_NO_POOL_LAYERS = frozenset({"sequential", "disabled"})
_LIBRARY_KNOBS = {
    "gnu": "OMP_NUM_THREADS=n", "intel": "OMP_NUM_THREADS=n", "llvm": "OMP_NUM_THREADS=n",
    "openblas": "OPENBLAS_NUM_THREADS=n", "mkl": "MKL_NUM_THREADS=n",
    "blis": "BLIS_NUM_THREADS=n",
}


@dataclass(frozen=True)
class Pool:
    """One thread pool of a process: its size, whether it started, how to size it."""

    label: str  # "OpenBLAS [numpy 2.4.6]", "tensorflow inter-op"
    size: int
    started: bool | None  # its threads run now (None: cannot be known)
    knob: str  # how to size it, with "n" for the number
    evidence: str
    blas: bool = False  # a BLAS implementation's own pool (BLAS001's subject)
    framework: str = ""  # the framework whose own knob sizes it ("" = OpenMP/BLAS variables)


def thread_pools(snapshot: Snapshot) -> list[Pool]:
    """Every pool of known size, each once."""
    openmp = snapshot.implementations("openmp")
    by_path: dict[str, Pool] = {}
    for lib in [*openmp, *snapshot.implementations("blas")]:
        if lib.num_threads is None or lib.threading_layer in _NO_POOL_LAYERS:
            continue
        if lib.family == "blas" and lib.threading_layer in _OPENMP_LAYERS and openmp:
            continue
        knob = _LIBRARY_KNOBS.get(lib.vendor, "OMP_NUM_THREADS=n")
        owner = lib.distribution.partition(":")[2] or lib.distribution
        by_path[lib.path] = Pool(
            label=f"{VENDOR_NAMES.get(lib.vendor, lib.vendor)}"
                  + (f" [{owner}]" if owner else ""),
            size=lib.num_threads,
            started=None if lib.active_threads is None else lib.active_threads > 0,
            knob=f"{knob} or threadpoolctl.threadpool_limits(n)",
            evidence=describe_library(lib, snapshot),
            blas=lib.family == "blas",
        )
    pools = list(by_path.values())
    for framework in snapshot.frameworks:
        for pool in framework.pools:
            shared = by_path.get(pool.runs_on) if pool.runs_on else None
            if shared is not None:
                # The same threads as the runtime's pool: name the framework's knob there.
                merged = Pool(label=f"{shared.label} = {framework.name} {pool.name}",
                              size=shared.size, started=shared.started,
                              knob=pool.knob, evidence=shared.evidence
                              + f" — {framework.name}'s {pool.name} pool",
                              framework=framework.name)
                pools[pools.index(shared)] = merged
                by_path[pool.runs_on] = merged
                continue
            if pool.size is None:
                continue
            state = {True: ", started", False: ", not started yet", None: ""}[pool.started]
            pools.append(Pool(
                label=f"{framework.name} {pool.name}", size=pool.size, started=pool.started,
                knob=pool.knob, framework=framework.name,
                evidence=f"{framework.name} {framework.version} {pool.name} pool: "
                         f"{pool.size} threads ({pool.source}{state})"))
    return pools


_N = re.compile(r"(?<=[(=])n(?=\W|$)")


def knob_for(pool: Pool, threads: int) -> str:
    """The pool's knob with the number filled in."""
    return _N.sub(str(threads), pool.knob)
