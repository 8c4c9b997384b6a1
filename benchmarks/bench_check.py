"""Whole-process time of `numdoctor check` against the tools users run today.

    python benchmarks/bench_check.py [--repeat N]

Goals (issue #2): `numdoctor check --import numpy,scipy --format json` <= 1.3x
`python -c "import numpy, scipy; numpy.show_runtime()"`, and `numdoctor check --import torch`
<= 0.5x `python -m torch.utils.collect_env`. Both sides run in this same invocation,
alternating, and the median of the repeats is compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

PY = sys.executable


def timed(cmd: list[str]) -> float:
    env = dict(os.environ)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=env)
    return time.perf_counter() - start


def compare(name: str, ours: list[str], peer: list[str], goal: float, repeat: int) -> bool:
    timed(ours), timed(peer)  # warm the page cache for both
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(ours))
        b.append(timed(peer))
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = ma / mb
    ok = ratio <= goal
    print(f"{name}\n  numdoctor: median {ma:.3f} s  (min {min(a):.3f}, max {max(a):.3f})\n"
          f"  peer:      median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})\n"
          f"  ratio {ratio:.2f}x  goal <= {goal}x  -> {'MET' if ok else 'NOT MET'}\n")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} repeats\n")
    results = [compare(
        "check --import numpy,scipy --format json  vs  numpy.show_runtime()",
        [PY, "-m", "numdoctor", "check", "--import", "numpy,scipy", "--format", "json",
         "--fail-on", "never"],
        [PY, "-c", "import numpy, scipy; numpy.show_runtime()"], 1.3, args.repeat)]
    if importlib.util.find_spec("torch") is not None:
        results.append(compare(
            "check --import torch  vs  python -m torch.utils.collect_env",
            [PY, "-m", "numdoctor", "check", "--import", "torch", "--fail-on", "never"],
            [PY, "-m", "torch.utils.collect_env"], 0.5, max(3, args.repeat // 2)))
    else:
        print("torch is not installed: the collect_env comparison was skipped")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
