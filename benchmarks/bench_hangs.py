"""How fast `numdoctor run` concludes on each class of hang, and what watching costs.

    python benchmarks/bench_hangs.py [--only latency|cost|probe] [--seconds 60]
                                     [--compare-src DIR]

Goals (issue 14):
1. latency: from the moment a program stops (it prints READY just before) to numdoctor's exit
   with the report, for every class: without any timeout a *proven* deadlock is reported
   within 5 s; with `--hang-timeout 5` every class is reported about 5 s after the onset.
   A program that merely waits is never stopped without a timeout (shown as "not stopped").
2. cost: the CPU numdoctor itself spends per minute while it watches a healthy job (a NumPy
   loop that prints, and a job that waits in long sleeps between bursts of work, where the
   deadlock sentinel looks): goal <= 1 % of one CPU.
3. probe: `numdoctor probe --import torch --fork` wall time on this machine (69 s before on
   2 CPUs, goal <= 25 s) with the same verdicts; `--compare-src DIR` runs the same command
   with another numdoctor source tree (e.g. a checkout of the previous release) in the same
   session, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "hangs" / "programs"
TORCHRUN = shutil.which("torchrun") or str(Path(PY).with_name("torchrun"))

TORCH_FORK = """
import os, time
import torch
a = torch.randn(256, 256)
torch.mm(a, a)                  # torch's OpenMP pool starts
pid = os.fork()
if pid == 0:
    print("READY", flush=True)
    torch.mm(a, a)              # the child waits for pool threads it does not have
    os._exit(0)
os.waitpid(pid, 0)
"""

HEALTHY_BUSY = """
import resource, time
import numpy as np
a = np.random.default_rng(0).standard_normal((400, 400))
end = time.monotonic() + {seconds}
i = 0
while time.monotonic() < end:
    a = np.tanh(a @ a.T / 400.0) + 0.001
    i += 1
    if i % 20 == 0:
        print(f"step {{i}}", flush=True)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"CPU {{usage.ru_utime + usage.ru_stime:.3f}}")
"""

HEALTHY_WAITING = """
import resource, time
import numpy as np
a = np.random.default_rng(0).standard_normal((300, 300))
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    burst = time.monotonic() + 0.5
    while time.monotonic() < burst:
        a = np.tanh(a @ a.T / 300.0) + 0.001
    print("burst done", flush=True)
    time.sleep(4.5)             # waiting for the next batch: idle, never a deadlock
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"CPU {{usage.ru_utime + usage.ru_stime:.3f}}")
"""


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def cases(work: Path) -> list[tuple[str, list[str], bool]]:
    """(name, command, proven by design)."""
    fork = work / "torch_fork.py"
    fork.write_text(TORCH_FORK)
    found = [("lock-order deadlock (HANG004)", [PY, str(PROGRAMS / "lock_order.py")], True),
             ("pool waiting on a killed worker (HANG008)",
              [PY, str(PROGRAMS / "pool_killed_worker.py")], True),
             ("queue without producer (HANG005)",
              [PY, str(PROGRAMS / "queue_no_producer.py")], False),
             ("sleeping (HANG011)", [PY, str(PROGRAMS / "sleep_forever.py")], False)]
    if has("torch"):
        found += [("fork after an OpenMP pool (FORK001)", [PY, str(fork)], True),
                  ("DataLoader worker stuck (HANG006)",
                   [PY, str(PROGRAMS / "dataloader_stuck.py")], False)]
        if os.path.exists(TORCHRUN):
            for name, script, code in (("dist_mismatch", "collective mismatch", "HANG009"),
                                       ("dist_missing_rank", "missing rank", "HANG010")):
                found.append((f"{script} under torchrun (gloo) ({code})",
                              [TORCHRUN, "--standalone", "--nproc-per-node", "2",
                               str(PROGRAMS / f"{name}.py")], True))
    if has("tensorflow"):
        found.append(("tf.data generator blocked (HANG007)",
                      [PY, str(PROGRAMS / "tf_generator.py")], False))
    return found


def run_case(command: list[str], extra: list[str], limit: float, work: Path,
             env: dict[str, str]) -> tuple[float | None, str, float | None]:
    """(seconds from READY to numdoctor's exit or None when it was not stopped within
    `limit`, the report's headline code, seconds from READY to the report)."""
    report = work / "report.json"
    report.unlink(missing_ok=True)
    process = subprocess.Popen([PY, "-m", "numdoctor", "run", *extra, "--report", str(report),
                                "--", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.PIPE,
                               cwd=str(PROGRAMS), env=env)
    ready = threading.Event()
    onset = [0.0]

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            if raw.strip() == b"READY" and not ready.is_set():
                onset[0] = time.monotonic()
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        process.kill()
        process.wait()
        return None, "never READY", None
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None, "not stopped", None
    ended = time.monotonic() - onset[0]
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return ended, f"exit {process.returncode}, no report", None
    code = data["findings"][0]["code"] if data.get("findings") else "-"
    return ended, f"{code} ({data['outcome']['status']})", ended


def latency(work: Path, env: dict[str, str]) -> None:
    print("1. from the onset to numdoctor's exit with the report")
    print(f"   {'class':48s} {'no timeout':>22s}   {'--hang-timeout 5':>22s}")
    for name, command, proven in cases(work):
        plain, plain_code, _ = run_case(command, [], 15.0, work, env)
        timed, timed_code, _ = run_case(command, ["--hang-timeout", "5"], 60.0, work, env)
        left = f"{plain:5.1f} s {plain_code}" if plain is not None else plain_code
        right = f"{timed:5.1f} s {timed_code}" if timed is not None else timed_code
        verdict = ""
        if proven:
            verdict = "  goal <= 5 s: " + ("met" if plain is not None and plain <= 5 else
                                          "NOT met")
        elif plain is not None:
            verdict = "  WRONG: a mere wait was stopped without a timeout"
        print(f"   {name:48s} {left:>22s}   {right:>22s}{verdict}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cost(work: Path, seconds: float, env: dict[str, str]) -> None:
    print(f"2. numdoctor's own CPU while it watches a healthy {seconds:g} s job")
    for name, template in (("NumPy loop that prints", HEALTHY_BUSY),
                           ("bursts of work between 4.5 s sleeps", HEALTHY_WAITING)):
        job = work / "healthy.py"
        job.write_text(textwrap.dedent(template.format(seconds=seconds)))
        before = _children_cpu()
        started = time.monotonic()
        done = subprocess.run([PY, "-m", "numdoctor", "run", "--", PY, str(job)],
                              capture_output=True, text=True, env=env)
        wall = time.monotonic() - started
        total = _children_cpu() - before
        job_cpu = float(done.stdout.strip().splitlines()[-1].split()[1])
        ours = total - job_cpu
        print(f"   {name:40s} exit {done.returncode}, {wall:5.1f} s: numdoctor used "
              f"{ours:5.2f} s of CPU = {100 * ours / wall:.2f} % of one CPU "
              f"({60 * ours / wall:.2f} s per minute); goal <= 1 %: "
              f"{'met' if ours / wall <= 0.01 else 'NOT met'}")


def probe(env: dict[str, str], compare: str | None, rounds: int) -> None:
    if not has("torch"):
        print("3. probe: torch is not installed; skipped")
        return
    print("3. numdoctor probe --import torch --fork")
    trees = [("this tree", env)]
    if compare:
        other = dict(env, PYTHONPATH=compare + os.pathsep + env.get("PYTHONPATH", ""))
        trees.append((f"--compare-src {compare}", other))
    walls: dict[str, list[float]] = {label: [] for label, _ in trees}
    verdicts: dict[str, str] = {}
    for round_ in range(rounds):
        for label, tree_env in (trees if round_ % 2 == 0 else trees[::-1]):
            started = time.monotonic()
            done = subprocess.run([PY, "-m", "numdoctor", "probe", "--import", "torch",
                                   "--fork", "--format", "json"], capture_output=True,
                                  text=True, env=tree_env)
            walls[label].append(time.monotonic() - started)
            try:
                data = json.loads(done.stdout)
                counts = data["outcome"]["counts"]
                codes = sorted({f["code"] for f in data["findings"]})
                verdicts[label] = f"{counts} {codes}"
            except (ValueError, KeyError):
                verdicts[label] = f"exit {done.returncode}: {done.stderr[-300:]}"
    for label, values in walls.items():
        print(f"   {label:40s} median {statistics.median(values):6.1f} s (min {min(values):.1f}, "
              f"max {max(values):.1f})  verdicts {verdicts[label]}")
    ours = statistics.median(walls["this tree"])
    print(f"   goal <= 25 s: {'met' if ours <= 25 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("latency", "cost", "probe"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1, help="probe runs per tree")
    parser.add_argument("--compare-src", help="another numdoctor src/ for the probe timing")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    print(f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-hangs-") as tmp:
        work = Path(tmp)
        if args.only in (None, "latency"):
            latency(work, env)
        if args.only in (None, "cost"):
            cost(work, args.seconds, env)
        if args.only in (None, "probe"):
            probe(env, args.compare_src, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
