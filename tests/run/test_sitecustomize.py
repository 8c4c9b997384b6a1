"""The injected sitecustomize: armed in every Python process, invisible otherwise."""

from __future__ import annotations

import os
import subprocess

import pytest
from run_helpers import PYTHON, numdoctor_run, report, script, stacks_text


def _user_site(tmp_path, body: str):
    site = tmp_path / "usersite"
    site.mkdir()
    (site / "sitecustomize.py").write_text(body)
    return site


def test_the_users_own_sitecustomize_still_runs(tmp_path, mark):
    # It also runs in numdoctor's own interpreter (same PYTHONPATH): speak only in the
    # supervised program.
    site = _user_site(tmp_path, "import os, sys\nMARKER = 'user sitecustomize ran'\n"
                                "if 'NUMDOCTOR_RUN_DIR' in os.environ:\n"
                                "    print('from user sitecustomize', file=sys.stderr)\n")
    prog = script(tmp_path, """
        import faulthandler, os, sys, sitecustomize
        print(sitecustomize.MARKER)
        print(os.environ["NUMDOCTOR_INJECT_DIR"] in sys.path)  # our directory left sys.path
        print(faulthandler.is_enabled())
    """)
    result = numdoctor_run("--", PYTHON, prog, env={"PYTHONPATH": str(site),
                                                    "NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["user sitecustomize ran", "False", "True"]
    assert result.stderr == b"from user sitecustomize\n"


def test_a_failing_user_sitecustomize_is_reported_as_python_would(tmp_path, mark):
    site = _user_site(tmp_path, "import os\nif 'NUMDOCTOR_TEST_BROKEN' in os.environ:\n"
                                "    raise RuntimeError('broken site')\n")
    env = {"PYTHONPATH": str(site), "NUMDOCTOR_TEST_MARK": mark}
    plain = subprocess.run([PYTHON, "-c", "print('ran')"], capture_output=True,
                           env={**os.environ, **env, "NUMDOCTOR_TEST_BROKEN": "1"})
    supervised = numdoctor_run("--", "env", "NUMDOCTOR_TEST_BROKEN=1", PYTHON, "-c",
                               "print('ran')", env=env)
    assert plain.stdout == supervised.stdout == b"ran\n"
    assert supervised.stderr == plain.stderr
    assert b"Error in sitecustomize" in supervised.stderr


@pytest.mark.slow
def test_a_forked_child_writes_its_own_dump(tmp_path, mark):
    target = tmp_path / "report.json"
    prog = script(tmp_path, """
        import os, time
        def parent_waits(pid):
            os.waitpid(pid, 0)
        def child_waits():
            time.sleep(3600)
        pid = os.fork()
        if pid == 0:
            child_waits()
        print("forked", pid, flush=True)
        parent_waits(pid)
    """)
    # Without a ptrace tool, faulthandler is the rung that answers: each process, forked
    # ones included, into its own file.
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark, "NUMDOCTOR_PY_SPY": "/nonexistent",
                                "NUMDOCTOR_PYSTACK": "0"})
    assert result.returncode == 124
    child = int(result.stdout.split()[1])
    data = report(target)
    by_pid = {s["pid"]: s for s in data["outcome"]["stacks"]}
    assert "child_waits" in by_pid[child]["faulthandler"]
    assert "parent_waits" not in by_pid[child]["faulthandler"]
    main = next(p for p in data["outcome"]["processes"] if p["role"] == "main")["pid"]
    assert "parent_waits" in by_pid[main]["faulthandler"]
    assert "child_waits" not in by_pid[main]["faulthandler"]
    roles = {p["pid"]: p["role"] for p in data["outcome"]["processes"]}
    assert roles[child] == f"forked from {main}"


@pytest.mark.slow
def test_an_interpreter_that_skips_site_is_still_dumped_by_py_spy(tmp_path, mark):
    from numdoctor.core.stacks.pyspy import find_py_spy

    if find_py_spy() is None:
        pytest.skip("py-spy is not installed")
    target = tmp_path / "report.json"
    prog = script(tmp_path, """
        import time
        def isolated_sleeps():
            time.sleep(3600)
        print("up", flush=True)
        isolated_sleeps()
    """)
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", PYTHON, "-I",
                           prog, env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 124
    data = report(target)
    process = data["outcome"]["stacks"][0]
    assert process["sources"] == ["py-spy"]
    assert "isolated_sleeps" in stacks_text(data)
