"""The pytest plugin's hang protection on a real suite, against plain pytest and pytest-timeout.

    python benchmarks/bench_pytest_plugin.py [--repeat N] [--suite scipy.linalg.tests.test_basic]

Goal (issue 16): SciPy's own `scipy.linalg` tests (installed with scipy, run with --pyargs)
with `--numdoctor-hang-timeout 60` take <= 1.15x plain pytest, with identical pass/skip counts.
pytest-timeout (`--timeout 60 --timeout-method=thread`), which cannot interrupt a test stuck in
C code holding the GIL, is measured alongside as the peer.

The three commands run alternately (plain, numdoctor, pytest-timeout, plain, ...), each in a
fresh interpreter; the medians are compared, with min and max.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

PY = sys.executable


def commands(suite: str) -> dict[str, list[str]]:
    base = [PY, "-m", "pytest", "--pyargs", suite, "-q", "-p", "no:cacheprovider"]
    return {
        "plain": base,
        "numdoctor": [*base, "--numdoctor-hang-timeout", "60"],
        "pytest-timeout": [*base, "-p", "timeout", "--timeout", "60",
                           "--timeout-method=thread"],
    }


def outcome(text: str) -> dict[str, int]:
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return {kind: int(count) for count, kind in re.findall(r"(\d+) (\w+)", last)
            if kind in ("passed", "failed", "skipped", "errors", "error", "xfailed",
                        "xpassed", "deselected", "warnings", "warning")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--suite", default="scipy.linalg.tests.test_basic")
    args = parser.parse_args()
    runs = commands(args.suite)
    times: dict[str, list[float]] = {name: [] for name in runs}
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as work:
        for round_ in range(args.repeat):
            order = list(runs)
            # alternate which goes first, so that a drift of the machine favours no one
            order = order[round_ % len(order):] + order[:round_ % len(order)]
            for name in order:
                started = time.perf_counter()
                done = subprocess.run(runs[name], cwd=work, capture_output=True, text=True)
                times[name].append(time.perf_counter() - started)
                found = outcome(done.stdout)
                if counts.setdefault(name, found) != found:
                    print(f"warning: {name} gave {found}, before {counts[name]}")
                if done.returncode not in (0, 1):
                    print(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                          f"{done.stderr[-2000:]}")
                    return 2
    plain = statistics.median(times["plain"])
    print(f"suite: --pyargs {args.suite}, {args.repeat} alternating rounds, "
          f"{os.cpu_count()} CPU(s)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:15s} median {median:6.2f} s  (min {min(values):.2f}, "
              f"max {max(values):.2f})  ratio to plain {median / plain:.3f}x  "
              f"outcome {counts.get(name)}")
    same = counts.get("numdoctor") == counts.get("plain")
    ratio = statistics.median(times["numdoctor"]) / plain
    print(f"goal: numdoctor <= 1.15x plain with identical counts: ratio {ratio:.3f}x, "
          f"counts {'identical' if same else 'DIFFERENT'} -> "
          f"{'met' if ratio <= 1.15 and same else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
