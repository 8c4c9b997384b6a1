"""Scenarios side by side take turns for their operations: real processes, a real keeper."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time

import pytest

from numdoctor.probe.canaries import CANARIES
from numdoctor.probe.scenarios import OK_MARKER, Scenario, script
from numdoctor.probe.turns import ENV_TURN, WAIT_FOR_TURN, TurnKeeper

# A scenario reduced to its turn: wait, then be busy or idle, then print when it ran.
TAKER = f"""\
import os, sys, time
{WAIT_FOR_TURN}
turn = _wait_for_turn()
start = time.time()
what, seconds = sys.argv[1], float(sys.argv[2])
if what == "busy":
    while time.time() < start + seconds:
        pass
else:
    time.sleep(seconds)
print(start, time.time(), turn is not None, flush=True)
"""


@pytest.fixture
def keeper(tmp_path):
    keeper = TurnKeeper(str(tmp_path))
    yield keeper
    keeper.close()


def _taker(tmp_path, keeper, what, seconds, *, supervised_hang_timeout=None):
    path = tmp_path / "taker.py"
    path.write_text(TAKER)
    env = dict(os.environ, **{ENV_TURN: keeper.address})
    command = [sys.executable, str(path), what, str(seconds)]
    if supervised_hang_timeout is not None:
        command = [sys.executable, "-m", "numdoctor", "run", "--hang-timeout",
                   str(supervised_hang_timeout), "--", *command]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _ran(proc) -> tuple[float, float]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    start, end, had_turn = out.split()[-3:]
    assert had_turn == "True"
    return float(start), float(end)


def _wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_busy_scenarios_run_their_operations_one_at_a_time(tmp_path, keeper):
    procs = [_taker(tmp_path, keeper, "busy", 0.4) for _ in range(3)]
    spans = sorted(_ran(p) for p in procs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, spans
    assert keeper.turns == 3


def test_an_idle_holder_passes_the_turn_on(tmp_path, keeper):
    # A deadlocked scenario uses no CPU: the others must not wait for the supervisor to
    # kill it.
    idle = _taker(tmp_path, keeper, "idle", 4)
    _wait_for(lambda: keeper.turns == 1)
    busy = _taker(tmp_path, keeper, "busy", 0.1)
    busy_start, _ = _ran(busy)
    idle_start, _ = _ran(idle)
    assert busy_start - idle_start < 2.0
    assert keeper.passed_idle == 1


def test_waiting_for_a_turn_is_not_a_hang_to_the_supervisor(tmp_path, keeper):
    holder = _taker(tmp_path, keeper, "busy", 2.0)
    _wait_for(lambda: keeper.turns == 1)
    waiter = _taker(tmp_path, keeper, "busy", 0.1, supervised_hang_timeout=0.8)
    _, holder_end = _ran(holder)
    waiter_start, _ = _ran(waiter)
    assert waiter_start >= holder_end - 0.01


def test_the_reproduction_script_has_no_turn_taking_and_both_run_alone(tmp_path):
    scenario = Scenario(("numpy",), CANARIES["numpy.matmul"])
    plain, taking = script(scenario), script(scenario, take_turns=True)
    assert "_wait_for_turn" not in plain and "_wait_for_turn" in taking
    env = {k: v for k, v in os.environ.items() if k != ENV_TURN}
    for text in (plain, taking):
        path = tmp_path / "scenario.py"
        path.write_text(text)
        done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert OK_MARKER in done.stdout


def test_without_a_usable_socket_path_scenarios_run_without_turns(tmp_path, monkeypatch):
    from numdoctor.probe.engine import ProbeOptions, _Runner

    deep = tmp_path / ("d" * 120)  # longer than a Unix socket path may be
    deep.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    runner = _Runner(ProbeOptions(modules=["numpy"], jobs=2, timeout=60, hang_timeout=10), None)
    try:
        assert runner.turns is None
        (result,) = runner.run_all([Scenario(("numpy",), CANARIES["numpy.matmul"])])
    finally:
        runner.close()
    assert result is not None and result.outcome == "pass"
