"""cgroup v1/v2 quota resolution on fixture trees (the machine's own cgroup is fixed)."""

from __future__ import annotations

from pathlib import Path

from numdoctor.snapshot.system import effective_cpus, read_cgroup

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_v2_nested_quota_on_a_parent_binds_the_leaf(tmp_path):
    _tree(tmp_path, {
        "proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
        "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000\n",
        "sys/fs/cgroup/kubepods/pod1/cpu.max": "150000 100000\n",
        "sys/fs/cgroup/kubepods/cpu.max": "400000 100000\n",
        "sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "max\n",
        "sys/fs/cgroup/kubepods/pod1/memory.max": "2147483648\n",
    })
    info = read_cgroup(tmp_path / "proc/self", tmp_path)
    assert info.version == 2
    assert info.cpu_quota == 1.5
    assert info.cpu_quota_source.endswith("kubepods/pod1/cpu.max")
    assert info.memory_limit == 2 * 2**30
    assert effective_cpus(64, 64, info.cpu_quota) == 2


def test_v2_inside_a_cgroup_namespace(tmp_path):
    _tree(tmp_path, {
        "proc/self/cgroup": "0::/\n",
        "proc/self/mountinfo": "30 23 0:26 /../ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
                               .replace("/../ctr", "/"),
        "sys/fs/cgroup/cpu.max": "50000 100000\n",
    })
    info = read_cgroup(tmp_path / "proc/self", tmp_path)
    assert info.cpu_quota == 0.5
    assert effective_cpus(8, 8, info.cpu_quota) == 1


def test_v1_cfs_quota_and_memory_limit(tmp_path):
    _tree(tmp_path, {
        "proc/self/cgroup": "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n"
                            "1:name=systemd:/docker/abc\n",
        "proc/self/mountinfo":
            "40 30 0:35 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
            "41 30 0:36 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
    })
    info = read_cgroup(tmp_path / "proc/self", tmp_path)
    assert info.version == 1
    assert info.cpu_quota == 3.0
    assert info.memory_limit == 2**30
    assert effective_cpus(16, 4, info.cpu_quota) == 3


def test_no_limits_and_unreadable_files(tmp_path):
    _tree(tmp_path, {
        "proc/self/cgroup": "0::/user.slice\n",
        "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/user.slice/cpu.max": "max 100000\n",
    })
    info = read_cgroup(tmp_path / "proc/self", tmp_path)
    assert (info.cpu_quota, info.memory_limit) == (None, None)
    assert read_cgroup(tmp_path / "missing", tmp_path).version is None
    assert effective_cpus(4, 2, None) == 2


def test_machine_reading_is_consistent():
    import os

    from numdoctor.snapshot.system import collect_system

    system = collect_system()
    assert system.cpu_count == os.cpu_count()
    assert system.effective_cpus is not None and 1 <= system.effective_cpus <= system.cpu_count
