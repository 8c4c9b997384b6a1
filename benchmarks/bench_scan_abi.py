"""How long `numdoctor check --scan-abi` takes over this environment; goal: <= 5 s.

Run: `python benchmarks/bench_scan_abi.py [--repeat N]` in an environment with numpy, scipy,
scikit-learn and torch (this project's test environment also has tensorflow, which only
makes the scan larger).

Figures, each measured in fresh interpreters in this run:
1. the whole-environment ABI scan alone (`collect_binary(scan_abi=True)`): first run (page
   cache as the machine has it) and best of N;
2. `numdoctor check --import numpy,scipy,sklearn,torch` with and without `--scan-abi`: the
   end-to-end cost a user sees, and the part the scan adds;
3. the requirement check behind VER001 next to `pip check` (the peer it imitates).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

GOAL_S = 5.0
IMPORTS = "numpy,scipy,sklearn,torch"

_SCAN = """
import json, time
t = time.perf_counter()
from numdoctor.snapshot.binary import collect_binary
facts = collect_binary(scan_abi=True)
total = time.perf_counter() - t
print(json.dumps({"total": total, "scan": facts.scan_seconds, "files": facts.scanned_files,
                  "users": facts.numpy_users, "suspects": len(facts.extensions),
                  "symbols_checked": facts.symbols_checked}))
"""

_REQUIREMENTS = """
import json, time
t = time.perf_counter()
from numdoctor.snapshot.requirements import find_conflicts, installed_distributions
installed = installed_distributions()
involved, conflicts = find_conflicts(installed)
print(json.dumps({"total": time.perf_counter() - t, "installed": len(installed),
                  "checked": len(involved), "conflicts": len(conflicts)}))
"""


def _python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False, timeout=600)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3)")
    args = parser.parse_args()
    repeat = max(1, args.repeat)

    import importlib.metadata as md

    versions = []
    for name in ("numpy", "scipy", "scikit-learn", "torch", "tensorflow-cpu"):
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    print(f"environment: {sys.prefix} ({', '.join(versions)})")

    scans = [_python(_SCAN) for _ in range(repeat)]
    first, best = scans[0], min(scans, key=lambda s: s["total"])
    print(f"\n1. whole-environment ABI scan (collect_binary(scan_abi=True)), {repeat} runs")
    print(f"   files read: {first['files']} compiled files, {first['users']} use NumPy's "
          f"C-API, {first['suspects']} suspect(s); {first['symbols_checked']} loaded "
          "libraries' symbols checked")
    print(f"   first run: {first['total']:.2f} s (file scan {first['scan']:.2f} s)")
    print(f"   best run:  {best['total']:.2f} s (file scan {best['scan']:.2f} s)")
    print(f"   vs goal {GOAL_S:.0f} s: {first['total'] / GOAL_S:.2f}x of the budget (first run), "
          f"{best['total'] / GOAL_S:.2f}x (best)")

    base = [sys.executable, "-m", "numdoctor", "check", "--import", IMPORTS, "--format",
            "json", "--fail-on", "never"]
    plain = min(_timed(base) for _ in range(repeat))
    scanned = min(_timed([*base, "--scan-abi"]) for _ in range(repeat))
    print(f"\n2. numdoctor check --import {IMPORTS} (best of {repeat})")
    print(f"   without --scan-abi: {plain:.2f} s")
    print(f"   with --scan-abi:    {scanned:.2f} s  (the scan adds {scanned - plain:+.2f} s)")
    print(f"   vs goal {GOAL_S:.0f} s for --scan-abi: {scanned / GOAL_S:.2f}x of the budget "
          "(includes importing the four frameworks)")

    ours = min((_python(_REQUIREMENTS) for _ in range(repeat)), key=lambda r: r["total"])
    pip = min(_timed([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"])
              for _ in range(repeat))
    print(f"\n3. requirement conflicts (best of {repeat})")
    print(f"   numdoctor (VER001 facts, {ours['checked']} of {ours['installed']} distributions): "
          f"{ours['total'] * 1000:.0f} ms in-process")
    print(f"   pip check (all distributions, includes interpreter start): {pip:.2f} s")
    print(f"   ratio pip check / numdoctor: {pip / max(ours['total'], 1e-9):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
