"""The program's output, input and terminal reach the user exactly as without numdoctor."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from run_helpers import PYTHON, numdoctor_run, script

# A million lines, some with bytes that text layers like to mangle: NUL, invalid UTF-8, a
# carriage return, a line without a newline at the very end.
MILLION = """
import sys
out = sys.stdout.buffer
for i in range(1_000_000):
    if i % 997 == 0:
        out.write(b"line %d \\x00\\xff\\xfe caf\\xc3\\xa9\\r\\n" % i)
    else:
        out.write(b"%d\\n" % i)
out.write(b"no newline at the end")
"""


def expected_million() -> bytes:
    parts = []
    for i in range(1_000_000):
        if i % 997 == 0:
            parts.append(b"line %d \x00\xff\xfe caf\xc3\xa9\r\n" % i)
        else:
            parts.append(b"%d\n" % i)
    parts.append(b"no newline at the end")
    return b"".join(parts)


def test_a_million_lines_through_a_pipe_are_byte_exact(tmp_path, mark):
    # stdout and stderr are one pipe (2>&1): numdoctor copies them through one channel.
    result = numdoctor_run("--", PYTHON, script(tmp_path, MILLION), stderr=subprocess.STDOUT,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0
    assert result.stdout == expected_million()


def test_a_million_lines_into_a_file_are_byte_exact(tmp_path, mark):
    target = tmp_path / "out.bin"
    with open(target, "wb") as fh:
        result = numdoctor_run("--", PYTHON, script(tmp_path, MILLION), stdout=fh,
                               env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0
    assert result.stderr == b""
    assert target.read_bytes() == expected_million()


def test_stdout_and_stderr_keep_their_order_when_they_share_a_pipe(tmp_path, mark):
    code = """
        import os
        for i in range(3000):
            os.write(1 if i % 2 else 2, b"%d\\n" % i)
    """
    result = numdoctor_run("--", PYTHON, script(tmp_path, code), stderr=subprocess.STDOUT,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0
    assert result.stdout == b"".join(b"%d\n" % i for i in range(3000))


def test_separate_streams_reach_their_own_destinations(tmp_path, mark):
    code = """
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
    """
    result = numdoctor_run("--", PYTHON, script(tmp_path, code), env={"NUMDOCTOR_TEST_MARK": mark})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"to stdout\n",
                                                                  b"to stderr\n")


def test_stdin_is_passed_through(tmp_path, mark):
    code = """
        import sys
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(data[::-1])
    """
    payload = os.urandom(200_000)
    result = numdoctor_run("--", PYTHON, script(tmp_path, code), input=payload,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 0
    assert result.stdout == payload[::-1]


def test_output_printed_just_before_a_crash_is_not_lost(tmp_path, mark):
    code = """
        import ctypes, sys
        for i in range(20000):
            sys.stdout.write(f"line {i}\\n")
        sys.stdout.flush()
        print("last words", file=sys.stderr, flush=True)
        ctypes.string_at(0)
    """
    result = numdoctor_run("--", PYTHON, script(tmp_path, code), env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 139
    assert result.stdout.splitlines()[-1] == b"line 19999"
    assert len(result.stdout.splitlines()) == 20000
    assert result.stderr.startswith(b"last words\n")


def test_a_terminal_stays_a_terminal(tmp_path, mark):
    """On a terminal the program gets a pseudo-terminal: isatty() is true, bytes unchanged."""
    code = """
        import os, sys
        print("tty", sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())
        print("size", os.get_terminal_size().columns)
        sys.stdout.write("tab\\there\\n")
    """
    path = script(tmp_path, code)
    env = dict(os.environ, NUMDOCTOR_TEST_MARK=mark)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
        os.execve(PYTHON, [PYTHON, "-m", "numdoctor", "run", "--", PYTHON, path], env)
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    # The outer terminal translates \n into \r\n; the program's own bytes are unchanged.
    assert output.replace(b"\r\n", b"\n") == b"tty True True True\nsize 132\ntab\there\n"


def test_quiet_on_success_and_exit_status_passed_through(tmp_path, mark):
    code = """
        import sys
        print("working")
        sys.exit(0)
    """
    result = numdoctor_run("--", PYTHON, script(tmp_path, code), env={"NUMDOCTOR_TEST_MARK": mark})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"working\n", b"")


def test_report_is_written_after_a_success_too(tmp_path, mark):
    from run_helpers import report

    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, "-c", "print(1)",
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert (result.returncode, result.stderr) == (0, b"")
    data = report(target)
    assert data["kind"] == "run"
    assert data["outcome"]["status"] == "ok"
    assert data["outcome"]["exit_code"] == 0


def test_usage_errors(tmp_path):
    result = numdoctor_run()
    assert result.returncode == 2
    assert b"give the command to run" in result.stderr
    result = numdoctor_run("--hang-timeout", "-1", "--", "true")
    assert result.returncode == 2
    assert b"--hang-timeout" in result.stderr
    result = numdoctor_run("--report", str(tmp_path / "missing" / "r.json"), "--", "true")
    assert result.returncode == 2
    assert b"does not exist" in result.stderr


def test_command_not_found_exits_127_like_a_shell():
    result = numdoctor_run("--", "numdoctor-no-such-command")
    assert result.returncode == 127
    assert b"command not found" in result.stderr
    assert sys.executable  # the interpreter itself is fine


def test_a_reader_that_leaves_ends_the_program_with_sigpipe_as_without_numdoctor(mark):
    """`numdoctor run -- yes | head -1`: the program must get SIGPIPE, not run forever."""
    env = dict(os.environ, NUMDOCTOR_TEST_MARK=mark)
    process = subprocess.Popen([PYTHON, "-m", "numdoctor", "run", "--", "yes"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout.readline() == b"y\n"
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141  # 128 + SIGPIPE, like the shell
    assert err == b""  # the reader leaving is not a failure worth a report
