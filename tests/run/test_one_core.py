"""One supervision core: a step added to the core's dump ladder shows up in `numdoctor run`
and in the pytest plugin alike, because neither has a copy of its own.

The "new step" is installed the way a fix would land: by changing `numdoctor.core` (here
through a `sitecustomize` that wraps the ladder, in the real processes of each command).
"""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest
from run_helpers import PYTHON, numdoctor_run, script

pytestmark = pytest.mark.slow

NOTE = "the core's new dump step ran"

NEW_STEP = f"""
import numdoctor.core.stacks.ladder as ladder

_dump = ladder.Dumper.dump


def dump(self, targets, **options):
    found = _dump(self, targets, **options)
    for stacks in found.values():
        stacks.notes.append({NOTE!r})
    return found


ladder.Dumper.dump = dump
"""


@pytest.fixture
def core_changed(tmp_path) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NEW_STEP)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    return env


def test_a_new_dump_step_reaches_run(tmp_path, mark, core_changed):
    target = tmp_path / "report.md"
    prog = script(tmp_path, """
        import time
        time.sleep(60)
    """)
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", PYTHON, prog,
                           env={"PYTHONPATH": core_changed["PYTHONPATH"],
                                "NUMDOCTOR_TEST_MARK": mark}, timeout=60)
    assert result.returncode == 124
    assert NOTE in target.read_text()


def test_a_new_dump_step_reaches_the_pytest_plugin(tmp_path, core_changed):
    (tmp_path / "test_sleeps.py").write_text(textwrap.dedent("""\
        import time

        def test_sleeps():
            time.sleep(60)
    """))
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--numdoctor-hang-timeout", "2",
         "test_sleeps.py"], cwd=tmp_path, env=core_changed, capture_output=True, text=True,
        timeout=60)
    assert "1 failed" in result.stdout, result.stdout
    assert "no result within 2 s (--numdoctor-hang-timeout); stopped during call" in \
        result.stdout
    assert NOTE in result.stdout
