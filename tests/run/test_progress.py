"""What counts as progress for --hang-timeout: output that can be watched; bytes written
anywhere only when no output can be watched at all."""

from __future__ import annotations

import subprocess

import pytest
from run_helpers import PYTHON, numdoctor_run, script

pytestmark = pytest.mark.slow

# Writes to a socket pair every 50 ms (as a distributed job's store client polls), nothing
# to stdout or stderr after its first line, for `seconds`, then exits 0.
WRITES_TO_A_SOCKET = """
    import os, socket, time
    print("READY", flush=True)
    left, right = socket.socketpair()
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        os.write(left.fileno(), b"ping")  # write(2): counted in /proc/<pid>/io's wchar
        right.recv(16)
        time.sleep(0.05)
"""


def test_writing_to_a_socket_is_not_progress_when_stdout_is_watched(tmp_path, mark):
    prog = script(tmp_path, WRITES_TO_A_SOCKET.format(seconds=60))
    result = numdoctor_run("--hang-timeout", "2", "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark}, stderr=subprocess.DEVNULL,
                           timeout=60)
    assert result.returncode == 124
    assert result.stdout == b"READY\n"


def test_with_all_output_on_dev_null_bytes_written_are_progress(tmp_path, mark):
    """Nothing can be watched: a program busy writing is not declared hung."""
    prog = script(tmp_path, WRITES_TO_A_SOCKET.format(seconds=5))
    result = numdoctor_run("--hang-timeout", "2", "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0
