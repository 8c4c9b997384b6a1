"""Rules are pure functions of facts: drive the thread rules with the facts a container has."""

from __future__ import annotations

import json

from numdoctor.rules import all_rules, apply_rules
from numdoctor.snapshot.model import (
    CgroupInfo,
    LoadedLibrary,
    Snapshot,
    SystemInfo,
)


def container_snapshot(env: dict[str, str] | None = None) -> Snapshot:
    return Snapshot(
        system=SystemInfo(cpu_count=64, affinity_count=64,
                          cgroup=CgroupInfo(version=2, cpu_quota=2.0,
                                            cpu_quota_source="/sys/fs/cgroup/cpu.max"),
                          effective_cpus=2),
        libraries=[LoadedLibrary(path="/site/numpy.libs/libscipy_openblas64_.so", family="blas",
                                 vendor="openblas", distribution="numpy",
                                 distribution_version="2.4.6", num_threads=64)],
        environment=env or {},
    )


def test_container_quota_without_limit_is_thr001_and_thr002():
    found = {f.code: f for f in apply_rules(container_snapshot())}
    assert "THR002" in found and "THR001" in found
    assert "export OMP_NUM_THREADS=2" in found["THR002"].fix
    assert any("cgroup v2 CPU quota = 2" in e for e in found["THR002"].evidence)


def test_thread_limit_set_silences_thr002():
    found = {f.code for f in apply_rules(container_snapshot({"OMP_NUM_THREADS": "2"}))}
    assert "THR002" not in found


def test_snapshot_round_trips_through_json():
    snapshot = container_snapshot({"OMP_NUM_THREADS": "2"})
    again = Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())))
    assert again == snapshot


def test_every_rule_has_documentation_and_a_stable_code():
    import re

    for rule in all_rules():
        assert re.fullmatch(r"[A-Z]{2,8}\d{3}", rule.code), rule.code
        assert rule.title and len(rule.explanation) > 80, rule.code
        # Every problem says how to fix it; informational codes (GPU state) need not.
        if rule.severity.value != "info" and rule.code != "ND000":
            assert "Fix" in rule.explanation, rule.code
