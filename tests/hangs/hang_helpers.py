"""Helpers of tests/hangs: observe a real hang the way `numdoctor run` does (see conftest.py for
the fixtures), and load the facts recorded from real hangs."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from numdoctor.core import procfs, tree
from numdoctor.core.rundir import RunDir
from numdoctor.core.stacks.ladder import Dumper, Target
from numdoctor.core.waits import TreeFacts, collect
from numdoctor.rules.hangs import HangDiagnosis, analyse

PROGRAMS = Path(__file__).parent / "programs"
FACTS = Path(__file__).parent / "facts"
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
# Set NUMDOCTOR_RECORD_FACTS=1 to rewrite tests/hangs/facts/*.json from the real hangs.
RECORD = os.environ.get("NUMDOCTOR_RECORD_FACTS") == "1"


@dataclass
class Hung:
    name: str
    program: Path
    pid: int  # the main process
    facts: TreeFacts
    diagnosis: HangDiagnosis
    stdout: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, label: str) -> int:
        return expected_line(self.program, label)

    def where(self, label: str) -> str:
        return f"{self.program.name}:{self.line(label)}"

    @property
    def first(self):
        """The headline: the first error finding."""
        return next(f for f in self.diagnosis.findings if f.severity.value == "error")

    def text(self) -> str:
        return "\n".join(f"{f.code} {f.title}\n  " + "\n  ".join(f.evidence)
                         for f in self.diagnosis.findings)

    def pids(self, *, job_rank: str | None = None) -> list[int]:
        return [p.pid for p in self.facts.processes
                if job_rank is None or p.job.get("RANK") == job_rank]


def expected_line(program: Path, label: str) -> int:
    for number, text in enumerate(program.read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# expect: {label}"):
            return number
    raise LookupError(f"{program.name} has no '# expect: {label}' line")


def _tree_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        fields = procfs.stat_fields(pid)
        if fields and len(fields) > 12:
            total += int(fields[11]) + int(fields[12])
    return total


def _wait_idle(root: int, *, limit: float, quiet: float = 0.6) -> None:
    """Until the tree used under 5 % of a CPU for `quiet` seconds (or `limit` passed)."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + limit
    calm_since = None
    while time.monotonic() < deadline:
        pids = [root, *tree.descendants(root)]
        before = _tree_ticks(pids)
        time.sleep(0.2)
        used = (_tree_ticks(pids) - before) / hz / 0.2
        now = time.monotonic()
        if used < 0.05:
            calm_since = calm_since or now
            if now - calm_since >= quiet:
                return
        else:
            calm_since = None


def observe(name: str, *args: str, torchrun: bool = False, idle: bool = True,
            limit: float = 90.0, settle: float = 0.0) -> Hung:
    program = PROGRAMS / f"{name}.py"
    supervision = RunDir(tempfile.mkdtemp(prefix=f"numdoctor-hang-{name}-"))
    run_dir, dump_signal = supervision.path, supervision.dump_signal
    env = supervision.environment(os.environ)
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    command = ([TORCHRUN, "--standalone", "--nproc-per-node", "2", str(program), *args]
               if torchrun else [PYTHON, str(program), *args])
    started = time.monotonic()
    stderr = open(os.path.join(run_dir, "stderr.txt"), "wb")
    # As tree.spawn does (a session of its own), but with a stdin nobody writes to: the
    # stdin fixture waits on it.
    child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=stderr.fileno(), cwd=str(PROGRAMS), start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for raw in child.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            lines.append(text)
            if text == "READY":
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(limit):
            raise AssertionError(f"{name} never printed READY; stderr:\n"
                                 + Path(run_dir, "stderr.txt").read_text()[-3000:])
        time.sleep(settle)
        if idle:
            _wait_idle(child.pid, limit=limit / 2)
        else:
            time.sleep(0.5)
        if child.poll() is not None:
            raise AssertionError(f"{name} exited ({child.returncode}) instead of hanging; "
                                 "stderr:\n" + Path(run_dir, "stderr.txt").read_text()[-3000:])
        pids = [child.pid, *tree.descendants(child.pid)]
        infos = RunDir(run_dir).infos()
        targets = [Target(pid, python=pid in infos or "python" in os.path.basename(
            os.readlink(f"/proc/{pid}/exe")), dumpable=bool(infos.get(pid, {}).get("dumps")))
            for pid in pids if procfs.alive(pid)]
        dumper = Dumper(run_dir, dump_signal)
        facts = collect(pids, main_pid=child.pid, run_dir=run_dir, started=started, window=0.3,
                        stacks=lambda: dumper.dump(targets, tool_timeout=20))
        diagnosis = analyse(facts)
    finally:
        tree.kill_tree(child.pid, session=child.pid, include_root=True)
        child.wait(10)
        stderr.close()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    hung = Hung(name, program, child.pid, facts, diagnosis, lines,
                time.monotonic() - started)
    if RECORD:
        record(hung)
    shutil.rmtree(run_dir, ignore_errors=True)
    return hung


# -- recorded facts ---------------------------------------------------------------------------

def record(hung: Hung) -> None:
    """Save the facts of a real hang (made portable: the programs' folder is <programs>;
    kept small: the 12 innermost frames of a thread and its Python frames, long C++ names
    cut)."""
    data = hung.facts.to_dict()
    for process in data["processes"]:
        for thread in process["threads"]:
            stack = thread.get("stack")
            if stack:
                stack["frames"] = [f for i, f in enumerate(stack["frames"])
                                   if i < 12 or f["kind"] == "python"]
                for frame in stack["frames"]:
                    frame["function"] = frame["function"][:160]
    text = json.dumps(_portable(data), indent=None, separators=(",", ":"))
    (FACTS / f"{hung.name}.json").write_text(text + "\n")


def _portable(value):
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str):
        return value.replace(str(PROGRAMS), "<programs>")
    return value


def load_facts(name: str) -> TreeFacts:
    text = (FACTS / f"{name}.json").read_text().replace("<programs>", str(PROGRAMS))
    return TreeFacts.from_dict(json.loads(text))


# -- sessions ----------------------------------------------------------------------------------

# The slow ones first: they overlap with the quick ones while they import torch/TensorFlow.
SLOW = ("dist_", "tf_", "dataloader")


class Observations:
    """Each program observed once, several at a time, all started as the session begins."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.pool = concurrent.futures.ThreadPoolExecutor(3)
        self.futures: dict[str, concurrent.futures.Future[Hung]] = {}
        self.lock = threading.Lock()

    def submit(self, name: str, args: tuple[str, ...], options: dict) -> None:
        with self.lock:
            if name not in self.futures:
                args = tuple(a.format(**self.values) for a in args)
                self.futures[name] = self.pool.submit(observe, name, *args, **options)

    def get(self, name: str) -> Hung:
        return self.futures[name].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def program_of(item: pytest.Item) -> tuple[str, tuple[str, ...], dict] | None:
    marker = item.get_closest_marker("hang_program")
    if marker is None:
        return None
    if any(m.args and m.args[0] is True for m in item.iter_markers("skipif")):
        return None  # skipped: not observed
    return marker.args[0], tuple(marker.args[1:]), dict(marker.kwargs)


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


needs_torch = pytest.mark.skipif(not has_module("torch"), reason="torch is not installed")
needs_tf = pytest.mark.skipif(not has_module("tensorflow"), reason="tensorflow not installed")
needs_torchrun = pytest.mark.skipif(not os.path.exists(TORCHRUN) or not has_module("torch"),
                                    reason="torchrun is not installed")
