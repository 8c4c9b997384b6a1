"""Parallel efficiency of `numdoctor probe` (issue #5).

    python benchmarks/bench_probe.py [--jobs 2] [--rounds 3]

Runs the same 40-scenario probe one scenario at a time (`--jobs 1`) and with `--jobs N`
(default: the CPU count), `--rounds` times each, alternating which goes first, and compares
the medians: on a shared machine one pair of runs moves by 20 %. Efficiency =
T(1) / (N x T(N)).
Goal: >= 80 % on 2 cores. The 40 scenarios: numpy.matmul, numpy.svd, numpy.inv, numpy.eigh
and scipy.lu, after `import numpy, scipy` in both orders, in-process and forked, with the
default environment and OMP_NUM_THREADS=1 (5 x 2 x 2 x 2). The five operations alone (the
reference for "slow") run in both measurements too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ARGS = ["--import", "numpy,scipy", "--op", "numpy.matmul,numpy.svd,numpy.inv,numpy.eigh,scipy.lu",
        "--mode", "inprocess,fork", "--format", "json", "--fail-on", "never"]


def run(jobs: int) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "numdoctor", "probe", *ARGS, "--jobs",
                           str(jobs)], capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ones, ns = [], []
    for round_ in range(max(1, args.rounds)):
        for jobs in ((1, args.jobs) if round_ % 2 == 0 else (args.jobs, 1)):
            seconds, result = run(jobs)
            (ones if jobs == 1 else ns).append(seconds)
            if jobs == 1:
                r1 = result
            else:
                rn = result
    t1, tn = statistics.median(ones), statistics.median(ns)
    n1 = len(r1["outcome"]["scenarios"])
    counts = rn["outcome"]["counts"]
    efficiency = t1 / (args.jobs * tn)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"scenarios in the matrix: {n1} (+5 operations alone); outcomes with --jobs "
          f"{args.jobs}: {counts}")
    print(f"--jobs 1:  median {t1:.2f} s  ({', '.join(f'{t:.2f}' for t in ones)})")
    print(f"--jobs {args.jobs}:  median {tn:.2f} s  ({', '.join(f'{t:.2f}' for t in ns)})   "
          f"speed-up {t1 / tn:.2f}x")
    print(f"parallel efficiency {efficiency:.0%}  goal >= 80%  -> "
          f"{'MET' if efficiency >= 0.8 else 'NOT MET'}")
    return 0 if efficiency >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
