"""The frameworks' own thread pools, against the CPUs: rules on hand-written snapshots, and
the pools read from real torch and TensorFlow without initialising them."""

from __future__ import annotations

import pytest
from checkutil import check_json, module_installed, run_python

from numdoctor.findings import Severity
from numdoctor.rules import apply_rules
from numdoctor.snapshot.model import (
    CgroupInfo,
    FrameworkInfo,
    LoadedLibrary,
    Snapshot,
    SystemInfo,
    ThreadPool,
)

GOMP = "/site/torch/lib/libgomp.so.1"
OPENBLAS = "/site/numpy.libs/libscipy_openblas64_.so"


def tf_pools(size: int, *, configured: bool = False, started: bool = False
             ) -> list[ThreadPool]:
    return [ThreadPool(name=name, size=size, configured=configured, started=started,
                       source=f"default: the {size} schedulable CPU(s)",
                       knob=f"tf.config.threading.set_{key}_op_parallelism_threads(n) or "
                            f"TF_NUM_{key.upper()}OP_THREADS=n")
            for name, key in (("intra-op", "intra"), ("inter-op", "inter"))]


def torch_pools(size: int) -> list[ThreadPool]:
    return [ThreadPool(name="intra-op", size=size, knob="torch.set_num_threads(n)",
                       runs_on=GOMP, source="torch.get_num_threads()"),
            ThreadPool(name="inter-op", size=size, knob="torch.set_num_interop_threads(n)",
                       source="torch.get_num_interop_threads()")]


def snapshot(cpus: int, host: int, *frameworks: FrameworkInfo,
             libraries: list[LoadedLibrary] | None = None) -> Snapshot:
    return Snapshot(
        system=SystemInfo(cpu_count=host, affinity_count=host, effective_cpus=cpus,
                          cgroup=CgroupInfo(version=2, cpu_quota=float(cpus))
                          if cpus < host else CgroupInfo()),
        libraries=libraries if libraries is not None else [
            LoadedLibrary(path=OPENBLAS, family="blas", vendor="openblas",
                          distribution="numpy", num_threads=host, active_threads=1)],
        frameworks=list(frameworks),
        environment={"OMP_NUM_THREADS": str(host)},  # keeps THR002 out of the way
    )


def by_code(snap: Snapshot) -> dict:
    return {f.code: f for f in apply_rules(snap)}


def test_tensorflow_next_to_numpy_is_thr003_with_the_knobs():
    tf = FrameworkInfo(name="tensorflow", version="2.21.0", pools=tf_pools(4))
    found = by_code(snapshot(4, 4, tf))
    thr003 = found["THR003"]
    assert thr003.severity is Severity.INFO
    assert thr003.title == "3 thread pools can run 12 threads at once on 4 effective CPU(s)"
    assert "tf.config.threading.set_intra_op_parallelism_threads(1)" in thr003.fix
    assert "TF_NUM_INTEROP_THREADS=1" in thr003.fix
    assert "OMP_NUM_THREADS=1" in thr003.fix
    assert any("tensorflow 2.21.0 inter-op pool: 4 threads" in e for e in thr003.evidence)
    assert "THR001" not in found and "BLAS001" not in found


def test_framework_pools_sized_above_a_container_quota_name_their_knobs():
    tf = FrameworkInfo(name="tensorflow", version="2.21.0", pools=tf_pools(64))
    found = by_code(snapshot(2, 64, tf))
    thr001 = found["THR001"]
    assert "tf.config.threading.set_intra_op_parallelism_threads(2)" in thr001.fix
    assert "TF_NUM_INTRAOP_THREADS=2" in thr001.fix
    assert "export OMP_NUM_THREADS=2" in thr001.fix  # the 64-thread OpenBLAS pool too
    assert any("inter-op pool: 64 threads" in e for e in thr001.evidence)


def test_torch_intra_op_pool_is_its_openmp_pool_counted_once():
    gomp = LoadedLibrary(path=GOMP, family="openmp", vendor="gnu", distribution="torch",
                         num_threads=4)
    torch = FrameworkInfo(name="torch", version="2.13.0", pools=torch_pools(4))
    found = by_code(snapshot(4, 4, torch, libraries=[gomp]))
    thr003 = found["THR003"]
    # libgomp = torch intra-op (4) + torch inter-op (4): 8, not 12.
    assert thr003.title == "2 thread pools can run 8 threads at once on 4 effective CPU(s)"
    assert "torch.set_num_threads(2)" in thr003.fix
    assert "torch.set_num_interop_threads(2)" in thr003.fix
    assert any("torch's intra-op pool" in e for e in thr003.evidence)


def test_blas_threaded_with_openmp_is_the_openmp_pool():
    gomp = LoadedLibrary(path="/usr/lib/libgomp.so.1", family="openmp", vendor="gnu",
                         num_threads=4)
    blas = LoadedLibrary(path="/usr/lib/libopenblaso.so.0", family="blas", vendor="openblas",
                         num_threads=4, threading_layer="openmp")
    found = by_code(snapshot(4, 4, libraries=[gomp, blas]))
    assert "THR003" not in found and "THR001" not in found


def test_pools_within_the_cpus_are_quiet():
    tf = FrameworkInfo(name="tensorflow", pools=tf_pools(1, configured=True))
    libraries = [LoadedLibrary(path=OPENBLAS, family="blas", vendor="openblas", num_threads=1)]
    assert not {"THR001", "THR003"} & set(by_code(snapshot(4, 4, tf, libraries=libraries)))


def test_blas_copies_alone_are_blas001_not_thr003():
    libraries = [LoadedLibrary(path=OPENBLAS, family="blas", vendor="openblas", num_threads=4),
                 LoadedLibrary(path="/site/scipy.libs/libscipy_openblas.so", family="blas",
                               vendor="openblas", num_threads=4)]
    found = by_code(snapshot(4, 4, libraries=libraries))
    assert "BLAS001" in found and "THR003" not in found


@pytest.mark.slow
@pytest.mark.skipif(not module_installed("tensorflow"), reason="needs tensorflow")
def test_tensorflow_pools_are_read_without_initialising_tensorflow():
    done = run_python("""
        import json, tensorflow as tf
        from tensorflow.python.eager import context
        tf.config.threading.set_inter_op_parallelism_threads(3)
        from numdoctor.snapshot.frameworks import collect_frameworks
        (info,) = [f for f in collect_frameworks() if f["name"] == "tensorflow"]
        print(json.dumps({"pools": info["pools"],
                          "initialized": context.context()._context_handle is not None,
                          "devices": context.context()._physical_devices}))
    """, env={"TF_NUM_INTRAOP_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    facts = json.loads(done.stdout.strip().splitlines()[-1])
    pools = {p["name"]: p for p in facts["pools"]}
    assert pools["intra-op"]["size"] == 2 and pools["intra-op"]["configured"]
    assert pools["intra-op"]["source"] == "TF_NUM_INTRAOP_THREADS=2"
    assert pools["inter-op"]["size"] == 3
    assert "set_inter_op_parallelism_threads(3)" in pools["inter-op"]["source"]
    assert pools["inter-op"]["started"] is False
    # Reading them listed no device and created no eager context.
    assert facts["initialized"] is False and facts["devices"] is None


@pytest.mark.slow
@pytest.mark.skipif(not module_installed("torch"), reason="needs torch")
def test_torch_pools_in_the_report():
    report = check_json("--import", "torch")
    torch = next(f for f in report["snapshot"]["frameworks"] if f["name"] == "torch")
    pools = {p["name"]: p for p in torch["pools"]}
    gomp = [lib["path"] for lib in report["snapshot"]["libraries"]
            if lib["vendor"] == "gnu" and lib["distribution"] == "torch"]
    assert pools["intra-op"]["runs_on"] == gomp[0]
    assert pools["inter-op"]["size"] >= 1
    assert pools["inter-op"]["knob"] == "torch.set_num_interop_threads(n)"


@pytest.mark.slow
@pytest.mark.skipif(not module_installed("jax"), reason="needs jax")
def test_xla_cpu_pool_before_and_after_the_backend_starts():
    done = run_python("""
        import json, jax, jax.numpy as jnp
        from numdoctor.snapshot.frameworks import collect_frameworks

        def pool():
            (info,) = [f for f in collect_frameworks() if f["name"] == "jax"]
            return info["pools"][0]

        before = pool()
        jnp.ones(3).sum().block_until_ready()
        print(json.dumps([before, pool()]))
    """, env={"PJRT_NPROC": "3", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before["size"] == after["size"] == 3 and before["configured"]
    assert before["source"] == "PJRT_NPROC=3"
    assert before["started"] is False and after["started"] is True
