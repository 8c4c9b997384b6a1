"""The sentinel's cheap check between looks: where every thread of the tree waits, as the
kernel tells it. The same reading means the same stacks, so the look is skipped; a thread
that moved to another wait must read differently."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from numdoctor.core.monitor import Proc, read_stat
from numdoctor.supervise.sentinel import _same_wait, _waits

WAITER = """
import sys, threading, time
lock = threading.Lock()
lock.acquire()
sys.stdout.write("asleep\\n"); sys.stdout.flush()
time.sleep(float(sys.argv[1]))          # first wait: a sleep
sys.stdout.write("locked\\n"); sys.stdout.flush()
lock.acquire()                          # second wait: a lock nobody releases
"""


def _proc(pid: int) -> Proc:
    stat = read_stat(pid)
    assert stat is not None
    return Proc(pid=pid, ppid=stat.ppid, start=stat.start)


def _settled(pid: int) -> tuple | None:
    for _ in range(50):
        reading = _waits([_proc(pid)])
        if reading is not None:
            return reading
        time.sleep(0.02)
    return None


def test_a_thread_that_stays_in_its_wait_reads_the_same_and_one_that_moves_reads_otherwise():
    child = subprocess.Popen([sys.executable, "-c", WAITER, "1.5"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"asleep\n"
        time.sleep(0.2)
        first = _settled(child.pid)
        time.sleep(0.3)
        assert first is not None and _settled(child.pid) == first
        assert child.stdout.readline() == b"locked\n"
        time.sleep(0.2)
        assert _settled(child.pid) not in (None, first)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 system call numbers")
def test_a_condition_variables_two_futex_words_are_one_wait_and_other_calls_are_kept():
    # futex (202) on glibc's condition variable: two signal groups, 4 bytes apart
    reading = "202 0x7f4165be5ae4 0x189 0x0 0x0 0x0 0xffffffff 0x7f415f7fed40 0x7f4165a91117"
    assert _same_wait(reading) == _same_wait(reading.replace("ae4", "ae0", 1))
    assert _same_wait(reading) != _same_wait(reading.replace("ae4", "b04", 1))
    sleep = "230 0x1 0x1 0x7ffd56b088c0 0x0 0x0 0x0 0x7ffd56b08880 0x7f4165a91117"
    assert _same_wait(sleep) == sleep
