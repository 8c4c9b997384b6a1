"""Overhead of numdoctor's in-process protection and of its pytest plugin's isolation.

    python benchmarks/bench_guard.py [--repeat N] [--iterations N] [--tests N]

1. `numdoctor.guard()` on a numpy loop (issue #7: "no measurable slowdown"): N iterations of
   a small matmul plus a heartbeat each iteration, with and without an active guard. Every
   variant runs in this process, interleaved, `--repeat` times; the verdict compares the
   difference of the medians (the same loop with and without a guard) with the run-to-run
   noise (half the interquartile range).
2. The pytest plugin's per-test cost: `--tests` trivial tests run by plain pytest and with
   `--numdoctor-isolate` (one forked subprocess per test), in a bare session and in one whose
   conftest imported numpy and scipy (a bigger process to fork). A few tests in fresh
   interpreters (the FORK001 fallback) for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import numdoctor

# -- 1. guard ----------------------------------------------------------------------------------

def _loop(iterations: int, beat: Callable[[], None] | None) -> float:
    a = np.random.default_rng(0).random((8, 8))
    start = time.perf_counter()
    if beat is None:
        for _ in range(iterations):
            a @ a
    else:
        for _ in range(iterations):
            a @ a
            beat()
    return time.perf_counter() - start


def _noop() -> None:
    pass


def _half_iqr(values: list[float]) -> float:
    """Half the interquartile range, relative to the median: the run-to-run noise."""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / 2 / statistics.median(values)


def heartbeat_reaches_guard() -> bool:
    """Does numdoctor.heartbeat() keep an active guard's watchdog quiet? (Measured, not read
    from the code: a 0.3 s watchdog must not fire during 1.2 s of beats.)"""
    with tempfile.TemporaryFile("w+") as out:
        guard = numdoctor.guard(hang_timeout=0.3, file=out, on_fork="ignore")
        try:
            end = time.monotonic() + 1.2
            while time.monotonic() < end:
                numdoctor.heartbeat()
                time.sleep(0.01)
        finally:
            guard.close()
        out.seek(0)
        return "Timeout" not in out.read()


def bench_guard(iterations: int, repeat: int) -> None:
    print(f"1. guard overhead: {iterations} iterations of an 8x8 matmul, {repeat} repeats, "
          "interleaved\n")

    def guarded(beat_of: Callable[[numdoctor.Guard], Callable[[], None]]) -> float:
        guard = numdoctor.guard(hang_timeout=60, on_fork="warn")
        try:
            return _loop(iterations, beat_of(guard))
        finally:
            guard.close()

    variants: dict[str, Callable[[], float]] = {
        "no guard, no heartbeat": lambda: _loop(iterations, None),
        "no guard, empty function call (peer)": lambda: _loop(iterations, _noop),
        "no guard, numdoctor.heartbeat()": lambda: _loop(iterations, numdoctor.heartbeat),
        "guard(hang_timeout=60), guard.heartbeat()": lambda: guarded(lambda g: g.heartbeat),
        "guard(hang_timeout=60), numdoctor.heartbeat()":
            lambda: guarded(lambda g: numdoctor.heartbeat),
    }
    for run in variants.values():  # warm up caches and the BLAS pool
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, run in variants.items():
            times[name].append(run())
    base = statistics.median(times["no guard, no heartbeat"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:47} median {median * 1e3:7.2f} ms  ({median / iterations * 1e9:6.0f} "
              f"ns/iter)  ratio {median / base:.3f}")
    print()
    # The guard's own cost is the difference between the same loop with and without an
    # active guard; a heartbeat of any kind costs at least a function call.
    for guarded_name, unguarded_name in (
            ("guard(hang_timeout=60), guard.heartbeat()", "no guard, empty function call (peer)"),
            ("guard(hang_timeout=60), numdoctor.heartbeat()", "no guard, numdoctor.heartbeat()")):
        with_guard, without = times[guarded_name], times[unguarded_name]
        diff = statistics.median(with_guard) / statistics.median(without) - 1
        noise = max(_half_iqr(with_guard), _half_iqr(without))
        verdict = "within run-to-run noise" if abs(diff) <= noise else "MEASURABLE"
        print(f"  {guarded_name}\n    vs {unguarded_name}: {diff:+.1%}, run-to-run noise "
              f"+/-{noise:.1%} -> {verdict}")
    print(f"  numdoctor.heartbeat() keeps an active guard's watchdog quiet: "
          f"{'yes' if heartbeat_reaches_guard() else 'NO (it does not notify the guard)'}\n")


# -- 2. pytest plugin --------------------------------------------------------------------------

def _suite(root: Path, name: str, tests: int, conftest: str) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "conftest.py").write_text(conftest)
    (directory / "test_trivial.py").write_text(
        "".join(f"def test_{i}():\n    assert {i} == {i}\n\n" for i in range(tests)))
    return directory


def _pytest(directory: Path, *options: str) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options,
               str(directory)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=directory)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(command)}):\n{result.stdout}"
                         f"{result.stderr}")
    return elapsed


def bench_plugin(tests: int, repeat: int) -> None:
    print(f"2. pytest plugin: {tests} trivial tests, {repeat} repeats, interleaved\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suites = {
            "bare session": _suite(root, "bare", tests, ""),
            "conftest imports numpy+scipy": _suite(root, "numeric", tests,
                                                   "import numpy, scipy.linalg\n"),
        }
        for label, directory in suites.items():
            _pytest(directory)  # warm the page cache
            plain, forked = [], []
            for _ in range(repeat):
                plain.append(_pytest(directory))
                forked.append(_pytest(directory, "--numdoctor-isolate"))
            p, f = statistics.median(plain), statistics.median(forked)
            print(f"  {label}:\n"
                  f"    plain pytest             median {p:6.2f} s\n"
                  f"    --numdoctor-isolate      median {f:6.2f} s  ratio {f / p:.2f}x\n"
                  f"    fork path, per test      {(f - p) / tests * 1e3:6.1f} ms")
        few = max(2, min(5, tests))
        directory = _suite(root, "spawn", few, "")
        plain = statistics.median(_pytest(directory) for _ in range(2))
        spawned = statistics.median(
            _pytest(directory, "--numdoctor-isolate", "--numdoctor-start-method", "spawn")
            for _ in range(2))
        print(f"  fresh interpreter per test (the FORK001 fallback), {few} tests: "
              f"{(spawned - plain) / few * 1e3:.0f} ms per test\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--tests", type=int, default=50)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, numdoctor "
          f"{numdoctor.__version__}, {os.cpu_count()} CPUs\n")
    bench_guard(args.iterations, args.repeat)
    bench_plugin(args.tests, max(3, args.repeat // 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
