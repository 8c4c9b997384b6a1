"""Parallel efficiency of `numdoctor probe` (issue #5).

    python benchmarks/bench_probe.py [--mix numpy|torch|both] [--jobs 2] [--rounds 3]

Runs the same 40-scenario probe one scenario at a time (`--jobs 1`) and with `--jobs N`
(default: the CPU count), `--rounds` times each, alternating which goes first, and compares
the medians: on a shared machine one pair of runs moves by 20 %. Efficiency =
T(1) / (N x T(N)). Goal: >= 80 % on 2 cores.

The mixes (each 40 scenarios, plus each operation alone as the reference for "slow"):
- numpy: numpy.matmul, numpy.svd, numpy.inv, numpy.eigh and scipy.lu after `import numpy,
  scipy` in both orders, in-process and forked, with the default environment and
  OMP_NUM_THREADS=1 (5 x 2 x 2 x 2).
- torch: torch.mm, torch.svd, numpy.matmul, numpy.svd and numpy.inv after `import torch,
  numpy` in both orders, in-process, with the default environment, OMP_NUM_THREADS=1,
  MKL_THREADING_LAYER=GNU and OPENBLAS_NUM_THREADS=1 (5 x 2 x 4). In-process only: forked
  torch scenarios deadlock, and waiting out hangs side by side would flatter the figure.

Also printed: the CPU the one-at-a-time run kept busy on average. When a lone scenario
already keeps more than one CPU busy (OpenBLAS workers spin-wait for ~0.1 s after they start
and after each call), running N at once cannot be N times faster: T(N) >= CPU seconds / N,
so efficiency <= 1 / (busy CPUs of the one-at-a-time run), shown as "bound".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MIXES = {
    "numpy": ["--import", "numpy,scipy",
              "--op", "numpy.matmul,numpy.svd,numpy.inv,numpy.eigh,scipy.lu",
              "--mode", "inprocess,fork"],
    "torch": ["--import", "torch,numpy",
              "--op", "torch.mm,torch.svd,numpy.matmul,numpy.svd,numpy.inv",
              "--mode", "inprocess", "--env", "MKL_THREADING_LAYER=GNU",
              "--env", "OPENBLAS_NUM_THREADS=1"],
}
COMMON = ["--format", "json", "--fail-on", "never"]


def run(mix: str, jobs: int) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of the whole process tree, and the JSON report."""
    env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "numdoctor", "probe", *MIXES[mix], *COMMON,
                           "--jobs", str(jobs)], capture_output=True, text=True, env=env,
                          check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout)


def measure(mix: str, jobs: int, rounds: int) -> bool:
    ones, ns, busy = [], [], []
    reports: dict[int, dict] = {}
    for round_ in range(max(1, rounds)):
        for j in ((1, jobs) if round_ % 2 == 0 else (jobs, 1)):
            wall, cpu, reports[j] = run(mix, j)
            if j == 1:
                ones.append(wall)
                busy.append(cpu / wall)
            else:
                ns.append(wall)
    t1, tn = statistics.median(ones), statistics.median(ns)
    efficiency = t1 / (jobs * tn)
    bound = min(1.0, 1 / statistics.median(busy))
    scenarios = len(reports[1]["outcome"]["scenarios"])
    operations = len(MIXES[mix][MIXES[mix].index("--op") + 1].split(","))
    print(f"\n[{mix}] {' '.join(MIXES[mix])}")
    print(f"scenarios in the matrix: {scenarios} (+{operations} operations alone); outcomes "
          f"with --jobs {jobs}: {reports[jobs]['outcome']['counts']}")
    print(f"--jobs 1:  median {t1:.2f} s  ({', '.join(f'{t:.2f}' for t in ones)}), "
          f"busy CPUs {statistics.median(busy):.2f}")
    print(f"--jobs {jobs}:  median {tn:.2f} s  ({', '.join(f'{t:.2f}' for t in ns)})   "
          f"speed-up {t1 / tn:.2f}x")
    print(f"parallel efficiency {efficiency:.0%}  (bound {bound:.0%})  goal >= 80%  -> "
          f"{'MET' if efficiency >= 0.8 else 'NOT MET'}")
    return efficiency >= 0.8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=[*MIXES, "both"], default="both")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    mixes = list(MIXES) if args.mix == "both" else [args.mix]
    met = [measure(mix, args.jobs, args.rounds) for mix in mixes]
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
