"""Function arguments as the stack tools really print them: py-spy and pystack with their
locals, gdb's backtrace of C code called with a password. The secrets go, the frames stay."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from redaction_corpus import OPENAI, leaks

from numdoctor.redact import redact_text

pytestmark = pytest.mark.slow

PASSWORD, TOKEN = "hunter2horse", "tok3nValue99"
PYTHON_PROGRAM = textwrap.dedent(f"""
    import sys, time
    def connect_with_secret_keys(host, password, api_key=None):
        token = {TOKEN!r}
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        time.sleep(120)
    connect_with_secret_keys("db", {PASSWORD!r}, api_key={OPENAI!r})
""")
C_PROGRAM = textwrap.dedent("""
    #include <unistd.h>
    void connect_with_secret_keys(const char *host, const char *password) { sleep(120); }
    int main(int argc, char **argv) {
        write(1, "ready\\n", 6);
        connect_with_secret_keys("db", argv[1]);
        return 0;
    }
""")


def _started(command: list[str]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(0.2)  # into the sleep
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def python_process(tmp_path) -> Iterator[subprocess.Popen]:
    script = tmp_path / "secret_keys_prog.py"
    script.write_text(PYTHON_PROGRAM)
    yield from _started([sys.executable, str(script)])


@pytest.fixture
def c_process(tmp_path) -> Iterator[subprocess.Popen]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "secret_keys.c").write_text(C_PROGRAM)
    binary = tmp_path / "secret_keys"
    subprocess.run(["gcc", "-g", "-O0", str(tmp_path / "secret_keys.c"), "-o", str(binary)],
                   check=True, capture_output=True)
    yield from _started([str(binary), PASSWORD])


def _tool(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "ptrace" in (result.stderr + result.stdout).lower():
        pytest.skip(f"{command[0]} cannot attach here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_py_spy_locals(python_process):
    from numdoctor.core.stacks.pyspy import find_py_spy

    py_spy = find_py_spy()
    if not py_spy:
        pytest.skip("py-spy is not installed")
    dump = _tool([py_spy, "dump", "--pid", str(python_process.pid), "--locals"])
    assert PASSWORD in dump and TOKEN in dump  # the tool really printed them
    masked = redact_text(dump)
    assert leaks(masked, [PASSWORD, TOKEN, OPENAI]) == []
    assert "connect_with_secret_keys (secret_keys_prog.py:6)" in masked
    assert 'host: "db"' in masked


def test_pystack_locals(python_process):
    pytest.importorskip("pystack")
    dump = _tool([sys.executable, "-m", "pystack", "remote", str(python_process.pid),
                  "--locals"])
    assert PASSWORD in dump and TOKEN in dump
    masked = redact_text(dump)
    # The call's source line passes the password as a bare positional string: nothing says
    # it is one (docs/redaction.md, limits). The printed arguments and locals are masked.
    shown = [line for line in masked.splitlines()
             if line.strip().startswith(("password:", "token:", "api_key:"))]
    assert len(shown) == 3, masked
    assert leaks("\n".join(shown), [PASSWORD, TOKEN, OPENAI]) == []
    assert 'line 6, in connect_with_secret_keys' in masked


def test_gdb_backtrace_arguments(c_process):
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    trace = _tool(["gdb", "-p", str(c_process.pid), "-batch", "-nx", "-q",
                   "-ex", "thread apply all bt"])
    assert PASSWORD in trace
    masked = redact_text(trace)
    assert PASSWORD not in masked
    assert 'password=0x' in masked and '"[REDACTED]"' in masked
    assert "connect_with_secret_keys (host=0x" in masked and '"db"' in masked
    assert "secret_keys.c:3" in masked
