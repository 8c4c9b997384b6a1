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


def compare(name: str, ours: list[str], peer: list[str], goal: float, repeat: int,
            floor: list[str]) -> bool:
    """`floor` is the plain import the check cannot avoid.

    It ends with os._exit, as `numdoctor check` does: the interpreter's teardown of the
    imported modules (tens of milliseconds for torch) is paid by neither. It keeps the
    cyclic garbage collector, which numdoctor's collector child runs without, so numdoctor
    can come in under it (about 0.1-0.2 s for torch).
    """
    timed(ours), timed(peer), timed(floor)  # warm the page cache for all three
    a, b, c = [], [], []
    for _ in range(repeat):
        a.append(timed(ours))
        b.append(timed(peer))
        c.append(timed(floor))
    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
    ratio = ma / mb
    ok = ratio <= goal
    print(f"{name}\n  numdoctor: median {ma:.3f} s  (min {min(a):.3f}, max {max(a):.3f})\n"
          f"  peer:      median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})\n"
          f"  floor:     median {mc:.3f} s  ({floor[-1]}: {mc / mb:.2f}x the peer)\n"
          f"  ratio {ratio:.2f}x  goal <= {goal}x  -> {'MET' if ok else 'NOT MET'}; "
          f"numdoctor's own cost {ma - mc:+.3f} s over the floor\n")
    return ok


def compile_bytecode() -> None:
    """Compile numdoctor's modules as `pip install` does, so that no run pays for it.

    An editable install writes `.pyc` files on first import, unless PYTHONDONTWRITEBYTECODE
    is set: then every run would recompile each module changed since the last `.pyc`.
    """
    import compileall

    import numdoctor

    compileall.compile_dir(os.path.dirname(numdoctor.__file__), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    compile_bytecode()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} repeats\n")
    results = [compare(
        "check --import numpy,scipy --format json  vs  numpy.show_runtime()",
        [PY, "-m", "numdoctor", "check", "--import", "numpy,scipy", "--format", "json",
         "--fail-on", "never"],
        [PY, "-c", "import numpy, scipy; numpy.show_runtime()"], 1.3, args.repeat,
        [PY, "-c", "import numpy, scipy, os; os._exit(0)"])]
    if importlib.util.find_spec("torch") is not None:
        results.append(compare(
            "check --import torch  vs  python -m torch.utils.collect_env",
            [PY, "-m", "numdoctor", "check", "--import", "torch", "--fail-on", "never"],
            [PY, "-m", "torch.utils.collect_env"], 0.5, max(3, args.repeat // 2),
            [PY, "-c", "import torch, os; os._exit(0)"]))
    else:
        print("torch is not installed: the collect_env comparison was skipped")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
