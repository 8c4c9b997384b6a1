"""Fixtures for fleet mode: a real LocalCluster plus hand-started workers that differ.

The LocalCluster runs in its own process (cluster_main.py); extra workers are `dask worker`
processes started with their own environment or preload script, the way a worker on another
node of a real cluster would differ.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="fleet mode needs dask.distributed")

HERE = Path(__file__).parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS", "OMP_THREAD_LIMIT", "KMP_DUPLICATE_LIB_OK")
# What Dask's nanny puts in its workers' environment (distributed.nanny.pre-spawn-environ).
NANNY_LIKE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
START_TIMEOUT = 120


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(extra)
    return env


def libiomp5() -> Path | None:
    try:
        dist = importlib.metadata.distribution("intel-openmp")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == "libiomp5.so":
            return Path(str(dist.locate_file(file))).resolve()
    return None


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numdoctor", *args], capture_output=True,
                          text=True, env=base_env(), timeout=timeout)


class Fleet:
    """A scheduler with its LocalCluster workers, plus named extra worker processes."""

    def __init__(self, tmp: Path, local_workers: int) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen] = []
        self.extra: dict[str, subprocess.Popen] = {}
        self.client = None
        log = open(tmp / "cluster.log", "wb")  # kept open: the cluster writes to it
        self.cluster = subprocess.Popen(
            [sys.executable, str(HERE / "cluster_main.py"), str(local_workers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            env=base_env(), start_new_session=True)
        self.processes.append(self.cluster)
        line = self.cluster.stdout.readline().strip()
        if not line.startswith("tcp://"):
            self.close()
            raise RuntimeError(f"the LocalCluster did not start: {(tmp / 'cluster.log')}")
        self.address = line
        self.expected = local_workers

    def add_worker(self, name: str, env: dict[str, str], preload: Path | None = None) -> None:
        command = [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                   "--no-nanny", "--nthreads", "1", "--name", name, "--no-dashboard",
                   "--local-directory", str(self.tmp / f"worker-{name}")]
        if preload is not None:
            command += ["--preload", str(preload)]
        log = open(self.tmp / f"worker-{name}.log", "wb")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=env, start_new_session=True)
        self.processes.append(process)
        self.extra[name] = process
        self.expected += 1

    def connect(self):
        from distributed import Client

        self.client = Client(self.address, timeout=60, set_as_default=False)
        self.client.wait_for_workers(self.expected, timeout=START_TIMEOUT)
        return self.client

    def address_of(self, name: str) -> str:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return next(a for a, info in workers.items() if str(info.get("name")) == name)

    def kill(self, name: str) -> None:
        process = self.extra[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        if self.client is not None:
            self.client.close(timeout=10)
        # Extra workers first (one of them may be frozen), then the cluster's whole session.
        for process in reversed(self.processes):
            if process is self.cluster:
                continue
            _killpg(process)
        try:
            self.cluster.stdin.close()
            self.cluster.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            pass
        _killpg(self.cluster)


def _killpg(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def effective_cpus() -> int:
    from numdoctor.snapshot.system import collect_system

    return collect_system().effective_cpus or os.cpu_count() or 1


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory) -> Iterator[Fleet]:
    """2 LocalCluster workers, one worker with a larger OMP_NUM_THREADS, one that preloads
    Intel's libiomp5; every worker has imported scikit-learn, as a workload would."""
    pytest.importorskip("sklearn", reason="the workers' workload imports scikit-learn")
    iomp = libiomp5()
    if iomp is None:
        pytest.skip("the intel-openmp wheel is not installed")
    tmp = tmp_path_factory.mktemp("mixed-fleet")
    fleet = Fleet(tmp, local_workers=2)
    try:
        threads = str(effective_cpus() + 2)
        fleet.add_worker("threads", base_env(**{**NANNY_LIKE, "OMP_NUM_THREADS": threads}))
        fleet.add_worker("iomp", base_env(**NANNY_LIKE, NUMDOCTOR_TEST_LIBIOMP=str(iomp)),
                         preload=HERE / "preload_iomp.py")
        client = fleet.connect()
        # What a scikit-learn workload leaves in a worker: libgomp and two OpenBLAS loaded.
        # (exec returns None; returning the module would import it here too.)
        client.run(exec, "import sklearn")
        fleet.omp_threads = threads
        yield fleet
    finally:
        fleet.close()


def report_json(result: subprocess.CompletedProcess) -> dict:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def wait_for_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return True
        time.sleep(0.05)
    return False
