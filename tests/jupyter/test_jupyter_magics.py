"""The IPython extension in a real IPython shell: %numdoctor and %%numdoctor_isolate."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("IPython", reason="IPython is not installed (pip install ipython)")

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

MIME = {"text/plain", "text/html", "text/markdown"}


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.enabled = False  # no history database in the user's home
    ip = InteractiveShell.instance(config=config)
    result = ip.run_cell("%load_ext numdoctor")
    assert result.success, result.error_in_exec
    return ip


@pytest.fixture
def ip(shell: InteractiveShell) -> InteractiveShell:
    shell.user_ns.pop("x", None)
    return shell


def run(ip: InteractiveShell, cell: str):
    with capture_output() as captured:
        result = ip.run_cell(cell)
    return result, captured


def test_numdoctor_magic_shows_a_check_of_this_kernel(ip):
    result, captured = run(ip, "%numdoctor")
    assert result.success, result.error_in_exec
    (output,) = captured.outputs
    assert set(output.data) == MIME
    assert "numdoctor check report" in output.data["text/html"]
    assert f"pid {os.getpid()}" in output.data["text/plain"]  # this kernel's process


def test_a_segfaulting_cell_shows_a_report_and_the_kernel_lives_on(ip):
    result, captured = run(ip, "%%numdoctor_isolate\nimport ctypes\nctypes.string_at(0)\n")
    assert type(result.error_in_exec).__name__ == "IsolatedCellError"
    assert "killed by SIGSEGV" in str(result.error_in_exec)
    (output,) = captured.outputs
    assert set(output.data) == MIME
    text = output.data["text/plain"]
    assert "SIG001" in text and "culprit: ctypes [Python standard library]" in text
    assert '"<numdoctor_isolate cell' in text  # faulthandler's traceback names the cell
    assert "SIGSEGV" in output.data["text/html"]
    after = ip.run_cell("x = 6 * 7")
    assert after.success and ip.user_ns["x"] == 42


def test_variables_go_in_and_come_back(ip, capfd):
    ip.user_ns["x"] = 20
    result, captured = run(ip, "%%numdoctor_isolate --vars x,y,gen\n"
                               "import os\n"
                               "print('isolated in', os.getpid())\n"
                               "x = x + 1\n"
                               "y = [x] * 2\n"
                               "gen = (i for i in y)\n"
                               "x * 2\n")
    assert result.success, result.error_in_exec
    assert ip.user_ns["x"] == 21 and ip.user_ns["y"] == [21, 21]
    assert "gen" not in ip.user_ns  # a generator cannot be pickled back
    assert "gen stays unchanged in this kernel" in captured.stderr
    assert captured.stdout.strip().endswith("42")  # the cell's last expression
    relayed = capfd.readouterr().out
    assert "isolated in" in relayed and f"isolated in {os.getpid()}" not in relayed


def test_an_exception_in_the_cell_is_raised_with_the_cells_traceback(ip):
    result, captured = run(ip, "%%numdoctor_isolate\nvalue = 1\nvalue / 0\n")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert 'File "<numdoctor_isolate cell' in captured.stderr
    assert "value / 0" in captured.stderr
    assert "numdoctor/jupyter.py" not in captured.stderr
    assert ip.run_cell("x = 1").success


@pytest.mark.slow
def test_a_hanging_cell_is_stopped_with_its_stacks(ip):
    started = time.monotonic()
    result, captured = run(ip, "%%numdoctor_isolate --timeout 2\n"
                               "import time\n"
                               "def wait_forever():\n"
                               "    time.sleep(300)\n"
                               "wait_forever()\n")
    assert time.monotonic() - started < 30
    assert "ran past --timeout 2 s" in str(result.error_in_exec)
    (output,) = captured.outputs
    assert "in wait_forever" in output.data["text/plain"]
    assert ip.run_cell("x = 2").success


def test_bad_arguments_are_usage_errors(ip):
    result, _ = run(ip, "%%numdoctor_isolate --vars 1x\npass\n")
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "'1x' is not a variable name" in str(result.error_in_exec)
    ip.user_ns["lock"] = __import__("threading").Lock()
    result, _ = run(ip, "%%numdoctor_isolate --vars lock\npass\n")
    assert "lock (lock) cannot be pickled into the isolated process" in str(
        result.error_in_exec)
    result, _captured = run(ip, "%%numdoctor_isolate --timeout -1\npass\n")
    assert "--timeout: must be a positive number of seconds" in str(result.error_in_exec)
