"""Hostile environments: `numdoctor check` must always end in a report and exit 0 or 1.

Each case is built for real: odd sys.path entries, a broken .pth in a layered venv, imports
that raise or crash, environment values that are not UTF-8, a HOME and cache directory that
are missing or cannot be written, a read-only site-packages, a /proc that cannot be read,
broken distribution metadata. Where a case needs root (a read-only bind mount, a /proc
without entries, both inside a private mount namespace) and cannot have it, it skips and says
why. A collection step that fails anyway must be reported as ND001, never as a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from checkutil import codes

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")

pytestmark = pytest.mark.slow


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KMP_DUPLICATE_LIB_OK",)}
    env["PYTHONPATH"] = SRC
    env.update(extra)
    return env


def run_check(*args: str, python: str = sys.executable, env: dict | None = None,
              cwd: str | Path | None = None, wrap: list[str] | None = None,
              fmt: str = "json") -> tuple[subprocess.CompletedProcess, dict | str]:
    """Run `check`; assert the report came back as a report: no traceback of ours, exit
    0 or 1. Returns the process and the parsed JSON report (or the text)."""
    command = [*(wrap or []), python, "-m", "numdoctor", "check", "--format", fmt, *args]
    result = subprocess.run(command, capture_output=True, env=env or base_env(), cwd=cwd,
                            timeout=300)
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode in (0, 1), f"exit {result.returncode}\n{stderr[-3000:]}"
    # Python's own site.py may print a traceback for a broken .pth; none may come from us.
    # (The report itself quotes the traceback of an import that raised: that is evidence.)
    assert not re.search(r'File "[^"]*numdoctor', stderr), stderr[-3000:]
    if fmt == "json":
        return result, json.loads(stdout)
    assert stdout.rstrip().splitlines()[-1].startswith("Summary:"), stdout[-3000:]
    return result, stdout


def assert_complete(report: dict) -> None:
    """No collection step failed, and the libraries the imports loaded are all there."""
    assert report["snapshot"]["collection_errors"] == [], report["snapshot"]["collection_errors"]
    assert "ND001" not in codes(report)
    vendors = {lib["vendor"] for lib in report["snapshot"]["libraries"]}
    assert "openblas" in vendors, report["snapshot"]["libraries"]


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


needs_mount_namespace = pytest.mark.skipif(
    not can_unshare(), reason="needs root and `unshare -m` (a private mount namespace) to make "
                              "a directory read-only or /proc unreadable for real")


def test_odd_sys_path_entries(tmp_path):
    """A zip file, a missing directory, relative entries, a file, a directory whose name is
    not UTF-8, the root itself and a directory one level below it."""
    archive = tmp_path / "modules.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_module.py", "VALUE = 1\n")
    (tmp_path / "relative").mkdir()
    (tmp_path / "relative" / "relative_module.py").write_text("VALUE = 2\n")
    plain_file = tmp_path / "not-a-directory.txt"
    plain_file.write_text("x")
    odd = os.fsencode(tmp_path) + b"/odd-\xff-dir"
    os.mkdir(odd)
    entries = [os.fsencode(SRC), os.fsencode(archive), b"/nonexistent/numdoctor-test",
               b"relative", b".", os.fsencode(plain_file), odd, b"/", b"/tmp"]
    env = {os.fsencode(k): os.fsencode(v) for k, v in base_env().items()}
    env[b"PYTHONPATH"] = b":".join(entries)
    _, report = run_check("--import", "numpy,scipy.linalg,zipped_module,relative_module",
                          env=env, cwd=tmp_path)
    assert_complete(report)
    statuses = {a["module"]: a["status"] for a in report["snapshot"]["imports"]}
    assert statuses == dict.fromkeys(
        ["numpy", "scipy.linalg", "zipped_module", "relative_module"], "ok"), statuses
    assert "\\xff" in json.dumps(report["snapshot"]["environment"].get("PYTHONPATH", ""))


def test_broken_pth_in_a_layered_venv(tmp_path):
    """A venv whose .pth files add the real packages, one .pth that raises and one that
    names directories that do not exist."""
    venv = tmp_path / "layered"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    Path(site, "layer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    Path(site, "broken.pth").write_text("import numdoctor_test_no_such_module\n")
    # (A .pth that is not UTF-8 stops Python 3.11 itself before any program runs.)
    Path(site, "missing.pth").write_text("/nonexistent/numdoctor-test\nrelative/entry\n")
    _, report = run_check("--import", "numpy,scipy.linalg", python=python)
    assert_complete(report)


def test_imports_that_raise_or_crash(tmp_path):
    (tmp_path / "raising_module.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "crashing_module.py").write_text("import ctypes\nctypes.string_at(0)\n")
    result, report = run_check(
        "--import", "numpy,raising_module,crashing_module,scipy.linalg",
        env=base_env(PYTHONPATH=f"{SRC}:{tmp_path}"))
    assert result.returncode == 1  # IMP001 and IMP003 are errors: --fail-on error fails
    statuses = {a["module"]: a["status"] for a in report["snapshot"]["imports"]}
    assert statuses == {"numpy": "ok", "raising_module": "error",
                        "crashing_module": "crash", "scipy.linalg": "ok"}, statuses
    assert {"IMP001", "IMP003"} <= set(codes(report))
    assert_complete(report)


def test_default_check_when_a_known_framework_is_broken(tmp_path):
    """A package named like a known framework that crashes, and one that raises, on
    PYTHONPATH: the default import set records both and checks everything else."""
    (tmp_path / "numexpr").mkdir()
    (tmp_path / "numexpr" / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    (tmp_path / "lightgbm.py").write_text("raise ImportError('lib_lightgbm.so: cannot open')\n")
    result, report = run_check(env=base_env(PYTHONPATH=f"{SRC}:{tmp_path}"))
    statuses = {a["module"]: a["status"] for a in report["snapshot"]["imports"]}
    assert statuses["numexpr"] == "crash" and statuses["lightgbm"] == "error", statuses
    assert statuses["numpy"] == statuses["scipy.linalg"] == "ok", statuses
    assert result.returncode == 1
    assert_complete(report)


def test_environment_values_that_are_not_utf8():
    env = {os.fsencode(k): os.fsencode(v) for k, v in base_env().items()}
    env[b"OMP_PROC_BIND"] = b"spread\xff\xfe"
    env[b"MKL_\xffODD"] = b"1"
    env[b"TF_CLI_CONFIG_FILE"] = b"/root/.terraformrc"  # Terraform's, not TensorFlow's
    env[b"TF_CPP_MIN_LOG_LEVEL"] = b"2"
    _, text = run_check("--import", "numpy", env=env, fmt="text")
    assert "OMP_PROC_BIND=spread\\xff\\xfe" in text
    assert "TF_CPP_MIN_LOG_LEVEL=2" in text and "TF_CLI_CONFIG_FILE" not in text
    _, report = run_check("--import", "numpy", env=env)
    assert report["snapshot"]["environment"]["OMP_PROC_BIND"] == "spread\\xff\\xfe"


@pytest.mark.parametrize("home", ["unset", "missing", "a-file", "cache-is-a-file"])
def test_home_and_cache_directory_missing_or_unwritable(tmp_path, home):
    env = base_env()
    for name in ("NUMDOCTOR_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        env.pop(name, None)
    plain_file = tmp_path / "plain-file"
    plain_file.write_text("x")
    if home == "missing":
        env["HOME"] = str(tmp_path / "no" / "such" / "home")
    elif home == "a-file":
        env["HOME"] = str(plain_file)  # ~/.cache cannot be created under a file
    elif home == "cache-is-a-file":
        env["HOME"] = str(tmp_path)
        env["NUMDOCTOR_CACHE_DIR"] = str(plain_file)
    _, report = run_check("--import", "numpy,scipy.linalg", env=env)
    assert_complete(report)


@needs_mount_namespace
def test_read_only_site_packages_and_cache(shallow_target, bare_python, tmp_path):
    """The packages' directory and numdoctor's cache directory, bind-mounted read-only in a
    private mount namespace (root bypasses file modes, not a read-only mount)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    script = (f"mount --bind {shallow_target} {shallow_target} && "
              f"mount -o remount,bind,ro {shallow_target} && "
              f"mount --bind {cache} {cache} && mount -o remount,bind,ro {cache} && "
              f"touch {shallow_target}/probe 2>/dev/null && exit 99; "
              f'exec "$@"')
    env = base_env(PYTHONPATH=f"{SRC}:{shallow_target}", NUMDOCTOR_CACHE_DIR=str(cache))
    _, report = run_check("--import", "numpy,scipy.linalg", python=bare_python, env=env,
                          cwd=tmp_path, wrap=["unshare", "-m", "sh", "-c", script, "sh"])
    assert_complete(report)
    numpy = next(f for f in report["snapshot"]["frameworks"] if f["name"] == "numpy")
    assert numpy["distribution"] == "numpy" and numpy["blas_libraries"]


@needs_mount_namespace
def test_proc_that_cannot_be_read(tmp_path):
    """An empty file system over /proc: no maps, no tasks, no cgroup, no cpuinfo."""
    script = 'mount -t tmpfs none /proc && exec "$@"'
    _, text = run_check("--import", "numpy,scipy.linalg", fmt="text",
                        wrap=["unshare", "-m", "sh", "-c", script, "sh"], cwd=tmp_path)
    assert "could not read /proc/self/maps" in text
    assert "Native libraries: unknown" in text
    assert "ND001" not in text


def test_a_process_that_vanished_and_a_proc_tree_of_garbage(tmp_path):
    """The collectors that read other processes and the machine, pointed at a pid that has
    exited and at a /proc tree whose files are garbage, directories or missing."""
    from numdoctor.core.procfs import read_maps, thread_ids
    from numdoctor.snapshot.system import collect_system
    from numdoctor.snapshot.threads import attribute_threads

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(OSError):
        read_maps(child.pid)
    assert thread_ids(child.pid) == []
    counts, _examined, _unreadable = attribute_threads({"/lib/x.so": [(0, 1)]}, [],
                                                       pid=child.pid)
    assert counts == {"/lib/x.so": 0}

    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "cpuinfo").mkdir()  # a directory where a file should be
    (proc / "meminfo").write_bytes(b"MemTotal: \xff\xfe kB\n")
    (proc / "self" / "cgroup").write_bytes(b"0::/\xff\xfe/../\n1:cpu:\x00\n")
    (proc / "self" / "mountinfo").write_bytes(b"garbage \xff - cgroup2 cgroup2 rw\n"
                                              b"1 2 3:4 / /sys/fs/cgroup rw - cgroup2 x rw\n")
    info = collect_system(proc=proc, root=tmp_path)
    assert info.cpu_count and info.memory_total is None and info.cgroup.cpu_quota is None


def test_broken_distribution_metadata(tmp_path):
    """Metadata that pip would refuse, in front of the real packages on sys.path."""
    broken = tmp_path / "broken-metadata"
    broken.mkdir()
    nul = broken / "nulrecord-1.0.dist-info"
    nul.mkdir()
    (nul / "METADATA").write_text("Metadata-Version: 2.1\nName: nulrecord\nVersion: 1.0\n"
                                  "Requires-Dist: numpy (>=1.0,<<2)\n"
                                  "Requires-Dist: scipy; python_version >>> '3'\n")
    (nul / "RECORD").write_bytes(b"nulrecord/__init__.py,\x00,\x00\n\"unterminated,")
    (broken / "nulrecord").mkdir()
    (broken / "nulrecord" / "__init__.py").write_text("")
    garbage = broken / "garbage-2.0.dist-info"
    garbage.mkdir()
    (garbage / "METADATA").write_bytes(b"\xff\xfe\x00\x00garbage\n")
    (garbage / "INSTALLER").mkdir()  # a directory where a file should be
    (broken / "noversion.dist-info").mkdir()
    (broken / "empty-1.0.dist-info").mkdir()
    (broken / "fileinfo-1.0.egg-info").write_text("Name: fileinfo\nVersion: 1.0\n")
    claims = broken / "numpy-0.0.1.dist-info"  # metadata of a numpy that is not there
    claims.mkdir()
    (claims / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
    (claims / "RECORD").write_text("numpy/__init__.py,,\n")
    env = base_env(PYTHONPATH=f"{SRC}:{broken}")
    _, report = run_check("--import", "numpy,scipy.linalg,nulrecord", env=env)
    assert_complete(report)
    numpy = next(f for f in report["snapshot"]["frameworks"] if f["name"] == "numpy")
    assert numpy["distribution"] == "numpy" and numpy["blas_libraries"]
