"""The collector against the real kernel: real pipes, sockets, sleeps and locks in real
processes; the source reader on real files; the decoding of raw syscall arguments."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from numdoctor.core.waits import ThreadCpu, collect, read_fates
from numdoctor.core.waits.endpoints import TreeFds, resolve
from numdoctor.core.waits.sources import context
from numdoctor.core.waits.syscalls import meaning, name

PYTHON = sys.executable


# -- raw arguments -----------------------------------------------------------------------------

def test_syscall_tables_name_the_blocking_calls_on_both_architectures():
    assert name(202, "x86_64") == "futex" and name(98, "aarch64") == "futex"
    assert name(230, "x86_64") == "clock_nanosleep" and name(115, "aarch64") == \
        "clock_nanosleep"
    assert name(61, "x86_64") == "wait4" and name(260, "aarch64") == "wait4"
    assert name(7, "x86_64") == "poll" and name(73, "aarch64") == "ppoll"
    assert name(9999, "x86_64") == "syscall 9999"


def test_futex_timeout_pointer_says_whether_a_wait_is_timed():
    untimed = meaning("futex", (0x55AA, 0x189, 0, 0, 0, 0xFFFFFFFF))
    timed = meaning("futex", (0x55AA, 0x189, 0, 0x7FFD1000, 0, 0xFFFFFFFF))
    assert untimed.timed is False and untimed.futex == 0x55AA
    assert timed.timed is True and untimed.futex_op == "FUTEX_WAIT_BITSET"


def test_fd_child_and_sleep_arguments_are_decoded():
    assert meaning("read", (0, 0x1000, 16)).fd == 0
    assert meaning("poll", (0x7000, 3, 0xFFFFFFFF)).timed is False  # -1 ms: no timeout
    assert meaning("poll", (0x7000, 3, 5000)).timed is True
    assert meaning("wait4", (0xFFFFFFFFFFFFFFFF, 0, 0, 0)).child == -1
    assert meaning("wait4", (4321, 0, 0, 0)).child == 4321
    assert meaning("waitid", (1, 77, 0, 4)).child == 77
    sleep = meaning("clock_nanosleep", (1, 1, 0x7FF0, 0))
    assert sleep.absolute and sleep.clock == 1 and sleep.timeout_at == 0x7FF0


# -- sources -----------------------------------------------------------------------------------

def test_source_context_finds_the_lock_taken_and_the_locks_held(tmp_path):
    path = tmp_path / "work.py"
    path.write_text(textwrap.dedent("""\
        class Store:
            def update(self, other):
                self.index.acquire()
                with self.cache, open("x") as fh:
                    self.log.acquire()
                    self.log.release()
                    with (other.cache
                          ):
                        pass
                    self.flag.acquire(timeout=5)  # a comment
                self.index.release()
        """))
    at_with = context(str(path), 7, "Store.update")
    assert at_with is not None
    assert at_with.acquiring is not None and at_with.acquiring.expression == "other.cache"
    assert at_with.acquiring.untimed is True
    held = [(s.expression, s.line) for s in at_with.holding]
    assert held == [("self.index", 3), ("self.cache", 4)]  # log was released; open() is no lock
    timed = context(str(path), 10, "update")
    assert timed is not None and timed.acquiring is not None
    assert timed.acquiring.expression == "self.flag" and timed.acquiring.untimed is False
    assert timed.text == "self.flag.acquire(timeout=5)"
    assert timed.calls == ["self.flag.acquire"]


def test_source_context_of_a_missing_file_is_none(tmp_path):
    assert context(str(tmp_path / "gone.py"), 3, "f") is None


# -- the kernel --------------------------------------------------------------------------------

def _start(code: str, **kwargs) -> subprocess.Popen:
    process = subprocess.Popen([PYTHON, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                               **kwargs)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_a_sleeping_process_is_seen_in_clock_nanosleep_with_the_time_left():
    process = _start("""
        import time
        print("ready", flush=True)
        time.sleep(300)
    """)
    try:
        facts = collect([process.pid], main_pid=process.pid, stacks={}, window=0.1)
    finally:
        _stop(process)
    main = facts.processes[0].threads[0]
    assert main.syscall_name in ("clock_nanosleep", "nanosleep", "select")
    assert main.cpu is not None and main.cpu < 0.5
    if main.syscall_name == "clock_nanosleep":
        assert main.sleep_left is not None and 200 < main.sleep_left <= 300


def test_a_look_at_a_tree_idle_since_the_last_one_measures_from_its_reading():
    # One thread spins, the main one sleeps: the second look waits no window, yet tells the
    # busy thread from the blocked one over the whole span since the first look.
    process = _start("""
        import threading, time
        def spin():
            while True:
                pass
        threading.Thread(target=spin, daemon=True).start()
        print("ready", flush=True)
        time.sleep(300)
    """)
    try:
        cpu = ThreadCpu()
        collect([process.pid], main_pid=process.pid, stacks={}, window=0.1, cpu=cpu)
        assert cpu.taken is not None
        first_look = cpu.taken
        time.sleep(0.4)
        begun = time.monotonic()
        second = collect([process.pid], main_pid=process.pid, stacks={}, window=0.1,
                         idle_for=time.monotonic() - first_look + 1.0, cpu=cpu)
        took = time.monotonic() - begun
        # A reading from before the stretch the caller vouches for is not used: a window is.
        time.sleep(0.2)
        stale = collect([process.pid], main_pid=process.pid, stacks={}, window=0.1,
                        idle_for=0.05, cpu=cpu)
    finally:
        _stop(process)
    assert took < 0.1  # no window waited for
    assert second.window >= 0.4  # measured since the first look
    assert 0.09 <= stale.window < 0.2
    threads = sorted(second.processes[0].threads, key=lambda t: t.tid)
    main, spinner = threads[0], threads[1]
    assert main.tid == process.pid and main.cpu is not None and main.cpu < 0.2
    assert spinner.cpu is not None and spinner.cpu > 0.2


def test_a_reader_of_a_pipe_held_outside_the_tree_is_resolved_to_its_writer():
    read_end, write_end = os.pipe()
    process = _start("""
        import os, sys
        print("ready", flush=True)
        os.read(int(sys.argv[1]), 1)
    """.replace("sys.argv[1]", str(read_end)), pass_fds=(read_end,))
    try:
        facts = collect([process.pid], main_pid=process.pid, stacks={}, window=0.05)
    finally:
        _stop(process)
        os.close(read_end)
        os.close(write_end)
    waits = facts.processes[0].threads[0].waits_on
    assert waits is not None and waits.kind == "pipe" and "read end" in waits.text
    assert f"pid {os.getpid()}" in waits.peer_outside  # this test holds the write end


def test_a_socket_whose_peer_closed_is_peer_gone_and_a_tcp_wait_names_the_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    process = _start(f"""
        import socket
        a, b = socket.socketpair()
        b.close()
        conn = socket.create_connection(("127.0.0.1", {port}))
        print("ready", flush=True)
        conn.recv(1)
    """)
    try:
        index = TreeFds.read([process.pid])
        by_target = index.targets[process.pid]
        fds = sorted(fd for fd, target in by_target.items() if target.startswith("socket:"))
        endpoints = [resolve(process.pid, fd, index) for fd in fds]
        facts = collect([process.pid], main_pid=process.pid, stacks={}, window=0.05)
    finally:
        _stop(process)
        server.close()
    unix = [e for e in endpoints if e.kind == "unix"]
    assert unix and unix[0].peer_gone
    waits = facts.processes[0].threads[0].waits_on
    assert waits is not None and waits.kind == "tcp"
    assert "has not accepted the connection" in waits.text
    assert f"pid {os.getpid()}" in waits.peer_outside


def test_fates_are_read_from_the_run_directory(tmp_path):
    started = time.monotonic() - 10
    (tmp_path / "fates-300.txt").write_text(
        f"301 9 {started + 2.5:.3f}\n302 256 {started + 3:.3f}\n303 0\n")

    class Oom:
        pid, kind = 301, "oom-kill"

    fates = read_fates(str(tmp_path), started=started, kernel=[Oom()])
    assert [(f.pid, f.ppid, f.signal, f.exit_code) for f in fates] == [
        (301, 300, 9, None), (302, 300, None, 1)]
    assert fates[0].oom_killed and fates[0].ended == pytest.approx(2.5, abs=0.01)
    assert read_fates(None, started=started) == []
