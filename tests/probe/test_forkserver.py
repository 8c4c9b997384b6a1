"""The probe's fork servers: a scenario forked from an interpreter that imported its modules
must behave, and be judged, as the same scenario in a fresh `numdoctor run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from numdoctor.probe.canaries import Canary
from numdoctor.probe.forkserver import ForkServers
from numdoctor.probe.runner import run_scenario
from numdoctor.probe.scenarios import Scenario

# What a program can see of how it was started.
SEEN = textwrap.dedent("""\
    import json, os, sys, threading
    import numpy
    print(json.dumps({
        "name": __name__,
        "file": os.path.basename(__file__),
        "argv": [os.path.basename(a) for a in sys.argv],
        "path0": sys.path[0] == os.path.dirname(os.path.abspath(__file__)),
        "cwd": os.getcwd(),
        "numdoctor": sorted(m for m in sys.modules if m.startswith("numdoctor")),
        "threads": threading.active_count(),
        "own_session": os.getsid(0) == os.getpid(),
        "armed": os.path.exists(os.path.join(os.environ["NUMDOCTOR_RUN_DIR"],
                                             f"py-{os.getpid()}.info")),
        "stdin": os.readlink("/proc/self/fd/0"),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "secret": os.environ.get("PROBE_TEST_VARIABLE"),
    }), flush=True)
    print("to stderr", file=sys.stderr)
    sys.exit(3)
""")


@pytest.fixture
def servers(tmp_path):
    directory = tmp_path / "servers"
    directory.mkdir()
    keeper = ForkServers(str(directory))
    yield keeper
    keeper.close()


def _fresh(script: str, cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "numdoctor", "run", "--", sys.executable,
                           script], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_a_forked_program_sees_what_a_fresh_one_sees(tmp_path, servers):
    script = tmp_path / "seen.py"
    script.write_text(SEEN)
    env = dict(os.environ, PROBE_TEST_VARIABLE="from the group's environment")
    forked_dir, fresh_dir = tmp_path / "forked", tmp_path / "fresh"
    forked_dir.mkdir()
    fresh_dir.mkdir()
    forked = servers.run(("numpy",), env, ["--", sys.executable, str(script)],
                         cwd=str(forked_dir), limit=120)
    fresh = _fresh(str(script), str(fresh_dir), env)
    assert forked is not None, servers.notes
    assert (forked.returncode, fresh.returncode) == (3, 3)
    assert "to stderr" in forked.stderr and "to stderr" in fresh.stderr
    seen, expected = json.loads(forked.stdout), json.loads(fresh.stdout)
    assert seen["cwd"] == str(forked_dir) and expected["cwd"] == str(fresh_dir)
    seen.pop("cwd"), expected.pop("cwd")
    assert seen == expected
    assert seen["numdoctor"] == [] and seen["own_session"] and seen["armed"]
    assert seen["name"] == "__main__" and seen["stdin"] == "/dev/null"


def test_an_uncaught_exception_is_a_traceback_and_exit_status_1(tmp_path, servers):
    script = tmp_path / "fails.py"
    script.write_text("def main():\n    raise ValueError('bad input row 7')\n\nmain()\n")
    done = servers.run(("json",), dict(os.environ), ["--", sys.executable, str(script)],
                       cwd=str(tmp_path), limit=60)
    assert done is not None
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: bad input row 7" in done.stderr


def test_a_group_whose_import_fails_runs_fresh_and_says_why(tmp_path, servers):
    (tmp_path / "broken_module.py").write_text("raise ImportError('no backend here')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    assert servers.run(("broken_module",), env, ["--", sys.executable, "-c", "pass"],
                       cwd=str(tmp_path), limit=60) is None
    (note,) = servers.notes
    assert note.startswith("import broken_module: importing failed in the fork server")
    assert "ran as fresh processes" in note


LOCK_CYCLE = Canary("test.lock_cycle", "threading", textwrap.dedent("""\
    a, b = threading.Lock(), threading.Lock()
    ready = threading.Barrier(2)

    def one():
        with a:
            ready.wait()
            with b:
                pass

    def other():
        with b:
            ready.wait()
            with a:
                pass

    threads = [threading.Thread(target=f) for f in (one, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""))

ABORT = Canary("test.abort", "os", "os.abort()\n")


def test_a_proven_deadlock_in_a_forked_scenario_ends_without_waiting_for_the_timeout(
        servers):
    result = run_scenario(Scenario(("threading",), LOCK_CYCLE), timeout=60, hang_timeout=30,
                          servers=servers)
    assert result.outcome == "hang"
    assert result.seconds < 20  # the 30 s hang timeout never came into play
    assert result.findings[0]["code"] == "HANG004", result.findings[0]
    assert not servers.notes


def test_a_crash_in_a_forked_scenario_is_a_crash_with_its_signal(servers):
    result = run_scenario(Scenario(("os",), ABORT), timeout=60, hang_timeout=10,
                          servers=servers)
    assert result.outcome == "crash"
    assert "SIGABRT" in result.detail
    assert not servers.notes


def test_servers_beyond_the_memory_share_stop_least_recently_used_first(tmp_path):
    keeper = ForkServers(str(tmp_path), keep=8)
    try:
        keeper.memory = 1  # byte: every server is over it, so only the newest stays
        env = dict(os.environ)
        program = tmp_path / "nothing.py"
        program.write_text("pass\n")
        for module in ("json", "csv", "json"):
            done = keeper.run((module,), env, ["--", sys.executable, str(program)],
                              cwd=str(tmp_path), limit=60)
            assert done is not None and done.returncode == 0
        assert [key[0] for key in keeper._servers] == [("json",)]
        assert not keeper.notes
    finally:
        keeper.close()
