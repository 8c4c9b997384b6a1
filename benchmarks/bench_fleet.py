"""Time of `numdoctor.fleet.check` on a local cluster of 8 worker processes.

    python benchmarks/bench_fleet.py [--workers 8] [--repeat 5]

Goal (issue #8): collecting 8 local workers takes <= 2 s once the cluster is up. The figure
that counts is the first collection on fresh workers (they import numdoctor's collector on
that call), as `numdoctor fleet --local 8` does; warm repeats, workers that have imported
numpy and scipy, `--import numpy` and Dask's own `client.get_versions()` (which compares a
handful of package versions and nothing else) are printed for context, measured in the same
run on the same cluster.

Then `numdoctor.fleet.probe` (fleet --probe) on a LocalCluster of as many workers as CPUs, against
`numdoctor.probe.probe` running the same matrix on this host with as many jobs: what spreading a
probe over Dask costs when the workers share one host (each worker also runs every operation
alone once, its own baselines, where the local probe runs them once in all).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time

GOAL_SECONDS = 2.0


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def line(name: str, samples: list[float]) -> str:
    if len(samples) == 1:
        return f"  {name:<46} {samples[0]:.3f} s"
    return (f"  {name:<46} median {statistics.median(samples):.3f} s  "
            f"(min {min(samples):.3f}, max {max(samples):.3f}, n={len(samples)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-probe", action="store_true",
                        help="skip the fleet --probe measurement")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    import numdoctor.fleet

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.workers} workers, "
          f"{args.repeat} repeats\n")
    up = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(args.workers, timeout=120)
        print(f"cluster up in {time.perf_counter() - up:.2f} s (not counted)\n")

        def fleet_check(**kwargs):
            report = numdoctor.fleet.check(client, progress=False, **kwargs)
            answered = sum(w["status"] == "ok" for w in report.outcome["workers"].values())
            assert answered == args.workers, report.outcome["summary"]

        first = timed(fleet_check)
        warm = [timed(fleet_check) for _ in range(args.repeat)]
        dask = [timed(lambda: client.get_versions(check=False)) for _ in range(args.repeat)]
        client.run(exec, "import numpy, scipy.linalg")
        loaded = [timed(fleet_check) for _ in range(args.repeat)]
        isolated = timed(lambda: fleet_check(imports=["numpy"]))

    print("numdoctor.fleet.check on the running cluster:")
    print(line("first collection, fresh workers  (the figure)", [first]))
    print(line("repeated collection", warm))
    print(line("workers with numpy + scipy loaded", loaded))
    print(line("--import numpy (a subprocess per member)", [isolated]))
    print("peer, same cluster:")
    print(line("dask client.get_versions()", dask))
    ratio = first / GOAL_SECONDS
    met = first <= GOAL_SECONDS
    print(f"\nfirst collection {first:.3f} s, goal <= {GOAL_SECONDS:.1f} s: ratio {ratio:.2f}x "
          f"of the goal -> {'MET' if met else 'NOT MET'}")
    print(f"(repeated: {statistics.median(warm):.3f} s = "
          f"{statistics.median(warm) / statistics.median(dask):.1f}x dask get_versions)")

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "numdoctor", "fleet", "--local",
                           str(args.workers), "--format", "json", "--fail-on", "never"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"\nwhole command `numdoctor fleet --local {args.workers}` (cluster start, "
          f"collection, shutdown): {time.perf_counter() - start:.2f} s, exit {done.returncode}")
    if not args.skip_probe:
        bench_probe()
    return 0 if met else 1


def bench_probe() -> None:
    from distributed import Client, LocalCluster

    import numdoctor.fleet
    from numdoctor.probe import ProbeOptions, probe
    from numdoctor.snapshot.system import collect_system

    cpus = collect_system().effective_cpus or os.cpu_count() or 1
    options = ProbeOptions(modules=["numpy", "scipy"],
                           ops=["numpy.matmul", "numpy.svd", "numpy.inv", "numpy.eigh"],
                           jobs=cpus)
    print(f"\nprobe spread: numpy+scipy, 4 numpy operations, 2 orders x 2 environments "
          f"(16 scenarios), {cpus} workers x 1 job vs one host with {cpus} jobs")
    with LocalCluster(n_workers=cpus, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(cpus, timeout=120)
        start = time.perf_counter()
        report = numdoctor.fleet.probe(client, options, check=False, progress=False)
        spread = time.perf_counter() - start
    outcome = report.outcome["probe"]
    assert outcome["counts"] == {"pass": 16}, outcome["summary"]
    used = len({s["worker"] for s in outcome["scenarios"]})
    baselines = sum(len(w["baselines"]) for w in outcome["workers"].values())
    start = time.perf_counter()
    local = probe(options)
    alone = time.perf_counter() - start
    assert len(local.results) == 16
    print(line(f"fleet.probe, {used} workers ({baselines} baselines)", [spread]))
    print(line(f"probe.probe, this host ({len(local.baselines)} baselines)", [alone]))
    print(f"spread / local: {spread / alone:.2f}x the time "
          f"({16 / spread:.1f} vs {16 / alone:.1f} scenarios/s)")


if __name__ == "__main__":
    sys.exit(main())
