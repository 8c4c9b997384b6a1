"""The diff and the grouping, on facts as workers would send them (no cluster needed)."""

from __future__ import annotations

from numdoctor.fleet.collect import CLIENT, SCHEDULER, WORKER, FleetFacts, MemberFacts
from numdoctor.fleet.diff import compare
from numdoctor.fleet.report import build_report, group_findings, where
from numdoctor.rules import get
from numdoctor.snapshot.model import LoadedLibrary, Snapshot

FLAGS = ["sse2", "avx", "avx2", "fma", "avx512f"]


def snapshot(env=None, libs=(), flags=FLAGS, cpus=8) -> Snapshot:
    snap = Snapshot(environment=dict(env or {}))
    snap.system.python_version = "3.11.7"
    snap.system.python_implementation = "CPython"
    snap.system.cpu_flags = list(flags)
    snap.system.cpu_model = "Test CPU"
    snap.system.cpu_count = snap.system.effective_cpus = snap.system.affinity_count = cpus
    snap.libraries = list(libs)
    return snap


def openblas(threads: int | None = 1, dist="numpy", version="2.4.6") -> LoadedLibrary:
    return LoadedLibrary(path=f"/site/{dist}.libs/libopenblas.so", family="blas",
                         vendor="openblas", distribution=dist, distribution_version=version,
                         version="0.3.30", num_threads=threads)


def member(n: int, role=WORKER, packages=None, nthreads=1, host="10.0.0.1", **kwargs):
    address = "" if role == CLIENT else f"tcp://10.0.0.{n}:4000"
    return MemberFacts(role=role, address=address, host=host, nthreads=nthreads,
                       packages=dict(packages or {"numpy": "2.4.6", "dask": "2026.8.0"}),
                       snapshot=snapshot(**kwargs))


def facts(*members: MemberFacts) -> FleetFacts:
    return FleetFacts(scheduler_address="tcp://10.0.0.250:8786", members=list(members),
                      imports=None, timeout=60)


def flt001(report):
    return [f for f in report.findings if f.code == "FLT001"]


def test_a_stale_package_on_one_worker():
    stale = member(4, packages={"numpy": "1.26.4", "dask": "2026.8.0"})
    result = build_report(facts(member(1), member(2), member(3), stale))
    (finding,) = flt001(result)
    assert finding.title == "1 worker differs from the majority in packages: numpy"
    assert finding.where == "worker tcp://10.0.0.4:4000"
    assert finding.evidence == ("numpy: 1.26.4 (majority: 2.4.6, on 3 of 4 workers)",)
    (row,) = result.outcome["diff"]
    assert row["majority_members"] == [f"worker tcp://10.0.0.{n}:4000" for n in (1, 2, 3)]


def test_a_package_missing_on_two_workers_is_one_finding_for_both():
    lacking = [member(n, packages={"numpy": "2.4.6"}) for n in (3, 4)]
    (finding,) = flt001(build_report(facts(member(1), member(2), member(5), *lacking)))
    assert finding.where == "workers tcp://10.0.0.3:4000, tcp://10.0.0.4:4000"
    assert finding.evidence == ("dask: (not installed) (majority: 2026.8.0, on 3 of 5 "
                                "workers)",)


def test_a_tie_has_no_majority():
    one = member(1, env={"OMP_NUM_THREADS": "1"})
    two = member(2, env={"OMP_NUM_THREADS": "2"})
    result = build_report(facts(one, two))
    (finding,) = flt001(result)
    assert finding.title.startswith("Workers disagree on thread settings (no majority)")
    assert "no majority on 1 setting" in result.outcome["summary"]
    assert "differ from the majority" not in result.outcome["summary"]
    assert finding.evidence == ("OMP_NUM_THREADS: 1 on tcp://10.0.0.1:4000; 2 on "
                                "tcp://10.0.0.2:4000",)


def test_cpu_flags_say_what_is_missing():
    old = member(3, flags=["sse2", "avx", "avx2", "fma"])
    (finding,) = flt001(build_report(facts(member(1), member(2), old)))
    assert "CPU flags: lacks avx512f (majority: " in finding.evidence[0]
    assert finding.severity.value == "warning"


def test_pool_sizes_are_compared_only_where_the_library_is_loaded():
    loaded = [member(n, libs=[openblas(1)]) for n in (1, 2)]
    bare = member(3)
    differences = compare([*loaded, bare])
    assert [d.key for d in differences] == ["BLAS libraries"]
    assert differences[0].describe(differences[0].deviations[0][0]) == \
        "lacks OpenBLAS 0.3.30 [numpy 2.4.6]"


def test_the_client_is_held_to_the_workers_versions_but_may_have_extras():
    client = member(0, role=CLIENT, packages={"numpy": "2.3.0", "dask": "2026.8.0",
                                              "jupyterlab": "4.4.0"})
    result = build_report(facts(member(1), member(2), client))
    (finding,) = flt001(result)
    assert finding.title == "The client differs from the workers in packages: numpy"
    assert finding.where == "client"
    assert finding.evidence == ("numpy: 2.3.0 (workers: 2.4.6, on 2)",)


def test_identical_findings_group_and_durations_do_not_split_them():
    members = facts(member(1), member(2), member(3))
    rule = get("IMP001")
    per_member = {
        m.label: [rule.finding([f"import x ({seconds} s): boom"])]
        for m, seconds in zip(members.workers, ("0.1", "0.3", "1.2"), strict=True)
    }
    (finding,) = group_findings(per_member, members)
    assert finding.where == "all 3 workers"


def test_where_summarises_long_lists():
    members = facts(*(member(n) for n in range(1, 10)))
    labels = [m.label for m in members.workers if m.address != "tcp://10.0.0.5:4000"]
    assert where(labels, members) == "8 of 9 workers (all but tcp://10.0.0.5:4000)"
    assert where([*labels[:2], f"{SCHEDULER} tcp://s:1", CLIENT], members) == \
        "workers tcp://10.0.0.1:4000, tcp://10.0.0.2:4000, scheduler tcp://s:1, client"


def test_threads_times_pools_above_the_cpus_of_a_host():
    busy = [member(n, nthreads=2, cpus=8) for n in (1, 2, 3, 4)]
    elsewhere = member(5, host="10.0.0.9", nthreads=1, env={"OMP_NUM_THREADS": "1"})
    result = build_report(facts(*busy, elsewhere))
    (finding,) = [f for f in result.findings if f.code == "FLT005"]
    assert finding.title == "64 threads may run at once on host 10.0.0.1, which has 8 CPU(s)"
    assert finding.severity.value == "warning"
    assert "workers tcp://10.0.0.1:4000" in finding.where
    assert "tcp://10.0.0.5" not in finding.where


def test_failures_and_an_empty_cluster():
    missing = MemberFacts(role=WORKER, address="tcp://10.0.0.7:4000", status="error",
                          error="ModuleNotFoundError: No module named 'numdoctor'")
    result = build_report(facts(missing))
    (finding,) = [f for f in result.findings if f.code == "FLT004"]
    assert finding.title == "numdoctor is not installed there"
    assert "pip install numdoctor==" in finding.fix
    empty = build_report(facts(member(0, role=CLIENT)))
    assert [f.code for f in empty.findings] == ["FLT006"]
    assert "nothing to compare" in str(empty.outcome["sections"])
