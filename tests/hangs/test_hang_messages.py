"""What the frameworks print when they hang (or end a hang themselves), each becoming the
finding of its class. The texts are the frameworks' own (see docs/run.md, "What the
frameworks print when they hang")."""

from __future__ import annotations

import pytest

from numdoctor.rules.messages import Context, MessageScanner, findings

MESSAGES = {
    "HANG009 mismatch": (
        "HANG009",
        "RuntimeError: Detected mismatch between collectives on ranks. Rank 0 is running "
        "collective: CollectiveFingerPrint(SequenceNumber=1, OpType=BARRIER), but Rank 1 is "
        "running collective: CollectiveFingerPrint(SequenceNumber=1, OpType=ALLREDUCE, "
        "TensorShape=[1], TensorDtypes=Float, TensorDeviceTypes=TensorOptions(dtype=float "
        "(default), device=cpu)).",
        "rank 0 runs BARRIER, rank 1 runs ALLREDUCE"),
    "HANG010 gloo": (
        "HANG010",
        "RuntimeError: [../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed "
        "out waiting 1800000ms for recv operation to complete",
        "gloo collective timed out after 1800 s"),
    "HANG010 nccl": (
        "HANG010",
        "[rank0]:[E1206 10:00:00.000000 1 ProcessGroupNCCL.cpp:632] [Rank 0] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, NumelIn=1, "
        "NumelOut=1, Timeout(ms)=600000) ran for 600023 milliseconds before timing out.",
        "NCCL collective timed out after 600.023 s"),
    "HANG010 monitored": (
        "HANG010",
        "RuntimeError: Rank 1 failed to pass monitoredBarrier in 30000 ms",
        "Rank 1 did not reach monitored_barrier within 30 s"),
    "HANG010 store": (
        "HANG010",
        "torch.distributed.DistStoreError: Timed out after 1801 seconds waiting for clients. "
        "1/2 clients joined.",
        "1 of 2 ranks joined within 1801 s"),
    "HANG006": (
        "HANG006",
        "RuntimeError: DataLoader timed out after 60 seconds",
        "nothing for 60 s"),
    "HANG008 signal": (
        "HANG008",
        "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.",
        "DataLoader worker (pid 4242) was killed by signal: Killed"),
    "HANG008 exited": (
        "HANG008",
        "RuntimeError: DataLoader worker (pid(s) 4242, 4243) exited unexpectedly",
        "DataLoader worker (pid 4242, 4243) exited unexpectedly"),
    "RELOAD001": (
        "RELOAD001",
        "/x/site-packages/numpy/__init__.py:1: UserWarning: The NumPy module was reloaded "
        "(imported a second time). This can in some cases result in small but subtle issues "
        "and is discouraged.",
        "NumPy was imported a second time"),
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_each_framework_message_becomes_the_finding_of_its_class(case):
    code, text, title = MESSAGES[case]
    scanner = MessageScanner()
    data = ("training step 1\n" * 20 + text + "\nmore output\n").encode()
    for start in range(0, len(data), 41):  # split at awkward places, as pipe reads do
        scanner.feed(data[start:start + 41])
    scanner.finish()
    produced = findings(scanner.hits, Context())
    found = [f for f in produced if f.code == code]
    assert found, [f.code for f in produced]
    assert title in found[0].title
    assert any(text[:40] in line for line in found[0].evidence)
