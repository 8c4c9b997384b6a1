"""Workers that die, stall or freeze during collection are reported within the timeout."""

from __future__ import annotations

import threading
import time

import pytest
from fleet_helpers import HERE, NANNY_LIKE, Fleet, base_env, wait_for_file

import numdoctor.fleet

pytestmark = pytest.mark.slow

TIMEOUT = 12.0


@pytest.fixture
def troubled_fleet(tmp_path):
    """One healthy LocalCluster worker, three whose collection misbehaves, one without
    numdoctor."""
    fleet = Fleet(tmp_path, local_workers=1)
    try:
        for mode in ("slow", "stall", "freeze"):
            fleet.add_worker(mode, base_env(**NANNY_LIKE, NUMDOCTOR_TEST_TROUBLE=mode,
                                            NUMDOCTOR_TEST_MARKER=str(tmp_path / mode)),
                             preload=HERE / "preload_trouble.py")
        fleet.add_worker("bare", base_env(**NANNY_LIKE),
                         preload=HERE / "preload_without_numdoctor.py")
        fleet.connect()
        yield fleet
    finally:
        fleet.close()


def test_dead_hung_and_frozen_workers_are_reported_in_time(troubled_fleet, tmp_path):
    fleet = troubled_fleet
    addresses = {name: fleet.address_of(name)
                 for name in ("slow", "stall", "freeze", "bare")}
    killed = threading.Event()

    def kill_when_collecting() -> None:
        # The "slow" worker touches its marker once collection has started on it.
        if wait_for_file(tmp_path / "slow", timeout=60):
            fleet.kill("slow")
            killed.set()

    killer = threading.Thread(target=kill_when_collecting, daemon=True)
    killer.start()
    start = time.monotonic()
    report = numdoctor.fleet.check(fleet.client, timeout=TIMEOUT, progress=False)
    elapsed = time.monotonic() - start
    killer.join(timeout=5)
    assert killed.is_set(), "the slow worker never started collecting"
    # Never waits forever: the frozen worker costs the timeout, not more.
    assert elapsed < TIMEOUT + 8, elapsed

    workers = report.outcome["workers"]
    by_name = {w["name"]: w for w in workers.values()}
    assert by_name["0"]["status"] == "ok"
    assert by_name["slow"]["status"] == "lost"
    assert by_name["stall"]["status"] == "hang"
    assert by_name["freeze"]["status"] == "hang"
    assert by_name["bare"]["status"] == "error"
    assert report.fails("error")

    def where(name: str) -> str:
        return f"worker {addresses[name]}"

    lost = [f for f in report.findings if f.code == "FLT003"]
    assert [f.where for f in lost] == [where("slow")]

    hung = {f.where: f for f in report.findings if f.code == "FLT002"}
    assert set(hung) == {where("stall"), where("freeze")}
    # The stalled worker's event loop was alive: it said where its collection was stuck.
    stall = hung[where("stall")]
    assert stall.title.startswith("Collecting did not finish")
    assert any("time.sleep(600)" in line for line in stall.evidence), stall.evidence
    # The frozen one (C code holding the GIL) could not answer at all.
    assert "frozen or unreachable" in hung[where("freeze")].title

    (missing,) = [f for f in report.findings if f.code == "FLT004"]
    assert missing.where == where("bare")
    assert missing.title == "numdoctor is not installed there"

    summary = report.outcome["summary"]
    assert "1 answered" in summary and "2 hung" in summary and "1 lost" in summary
    assert "1 failed" in summary
