"""Owners beyond pip: dpkg's database (a tree of real files shaped like /var/lib/dpkg, and
the machine's own where it has one), and the site directories that have no prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from numdoctor.snapshot.ownership import _environment_prefix

STATUS = """\
Package: libfoo1
Status: install ok installed
Architecture: i386
Version: 1.0-1

Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1.2-3
Description: the one we want
 Package: not-a-field

Package: python3-thing
Status: install ok installed
Architecture: all
Version: 2:0.5-1

"""


@pytest.fixture
def dpkg_root(tmp_path) -> Path:
    root = tmp_path / "dpkg"
    (root / "info").mkdir(parents=True)
    (root / "status").write_text(STATUS)
    (root / "info" / "libfoo1:amd64.list").write_text(
        "/.\n/usr\n/usr/lib/x86_64-linux-gnu/foo-impl\n"
        "/usr/lib/x86_64-linux-gnu/foo-impl/libfoo.so.1.2\n"
        "/lib/x86_64-linux-gnu/libbar.so.1\n")
    (root / "info" / "python3-thing.list").write_text(
        "/usr/lib/python3/dist-packages/thing/__init__.py\n")
    for filler in range(40):  # lists a guess must not need to read
        (root / "info" / f"unrelated{filler}.list").write_text(f"/usr/share/doc/u{filler}\n")
    return root


def lookup(root: Path, *paths: str, cache: Path) -> list:
    """Ask in a fresh process (the answers are remembered per process and on disk)."""
    code = textwrap.dedent(f"""
        import json
        from numdoctor.snapshot.os_packages import os_package_owner
        print(json.dumps([os_package_owner(p, dpkg_root={str(root)!r}) for p in {paths!r}]))
    """)
    env = {**os.environ, "NUMDOCTOR_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return [tuple(x) if x else None for x in json.loads(done.stdout)]


def test_dpkg_lists_answer_owner_and_version(dpkg_root, tmp_path):
    cache = tmp_path / "cache"
    assert lookup(dpkg_root,
                  "/usr/lib/x86_64-linux-gnu/foo-impl/libfoo.so.1.2",
                  "/usr/lib/x86_64-linux-gnu/libbar.so.1",  # listed as /lib/... (merged /usr)
                  "/usr/lib/python3/dist-packages/thing/__init__.py",
                  "/usr/lib/x86_64-linux-gnu/libnobody.so.1",
                  "/home/user/venv/lib/libfoo.so.1.2",  # where no package manager installs
                  cache=cache) == [("deb:libfoo1", "1.2-3"), ("deb:libfoo1", "1.2-3"),
                                   ("deb:python3-thing", "2:0.5-1"), None, None]


def test_answers_are_kept_until_the_database_changes(dpkg_root, tmp_path):
    cache = tmp_path / "cache"
    path = "/usr/lib/python3/dist-packages/thing/__init__.py"
    assert lookup(dpkg_root, path, cache=cache) == [("deb:python3-thing", "2:0.5-1")]
    assert list(cache.glob("dpkg-owners-*.json"))
    (dpkg_root / "info" / "python3-thing.list").unlink()  # no list read the second time
    assert lookup(dpkg_root, path, cache=cache) == [("deb:python3-thing", "2:0.5-1")]
    # dpkg rewrites its status file on every change: the remembered answers go with it.
    (dpkg_root / "status").write_text(STATUS.replace("2:0.5-1", "2:0.6-1"))
    assert lookup(dpkg_root, path, cache=cache) == [None]


def test_a_broken_database_is_no_owner(tmp_path):
    root = tmp_path / "dpkg"
    (root / "info").mkdir(parents=True)
    (root / "status").write_bytes(b"\xff\xfe garbage\n\n")
    (root / "info" / "libfoo1.list").write_bytes(b"\xff\n/usr/lib/libfoo.so.1\n")
    (root / "info" / "weird.list").mkdir()  # a directory where a list should be
    assert lookup(root, "/usr/lib/libfoo.so.1", "/usr/lib/none.so",
                  cache=tmp_path / "c") == [("deb:libfoo1", ""), None]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a dpkg system")
def test_the_machines_own_dpkg_database_agrees_with_dpkg_s(tmp_path):
    libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6") \
        if os.path.exists("/lib/x86_64-linux-gnu/libc.so.6") else None
    if libc is None:
        pytest.skip("no x86_64 glibc at the Debian path")
    expected = subprocess.run(["dpkg", "-S", libc.replace("/usr/lib/", "/lib/", 1)],
                              capture_output=True, text=True)
    if expected.returncode != 0:
        expected = subprocess.run(["dpkg", "-S", libc], capture_output=True, text=True)
    package = expected.stdout.split(":", 1)[0]
    (owner,) = lookup(Path("/var/lib/dpkg"), libc, cache=tmp_path / "c")
    assert owner is not None and owner[0] == f"deb:{package}" and owner[1]


def test_site_directories_without_a_prefix():
    assert _environment_prefix("/opt/python") is None  # a --target directory, as on Lambda
    assert _environment_prefix("/python") is None
    assert _environment_prefix("/lib/python3/dist-packages") is None
    assert _environment_prefix("/usr/lib/python3/dist-packages") == "/usr"
    assert _environment_prefix("/venv/lib/python3.11/site-packages") == "/venv"
    assert _environment_prefix("/venv/lib64/python3.11/site-packages") == "/venv"


@pytest.mark.slow
def test_an_os_installed_distribution_is_owned_by_the_os_package(tmp_path):
    """Debian's python3-scipy ships a RECORD but no pip INSTALLER: pip did not install it."""
    if not os.path.exists("/usr/lib/python3/dist-packages/scipy/__init__.py") or \
            shutil.which("dpkg") is None:
        pytest.skip("apt's python3-scipy is not installed (scripts/test.sh installs it)")
    code = textwrap.dedent("""
        import json
        from numdoctor.snapshot.ownership import owning_distribution, owning_package
        path = "/usr/lib/python3/dist-packages/scipy/__init__.py"
        print(json.dumps([owning_distribution(path), owning_package(path)]))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
           "NUMDOCTOR_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(["/usr/bin/python3", "-s", "-c", code], capture_output=True,
                          text=True, env=env, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"/usr/bin/python3 cannot run numdoctor: {done.stderr[-300:]}")
    pip_view, owner = json.loads(done.stdout)
    assert pip_view[0] == "scipy"  # the RECORD lists it...
    assert owner[0] == "deb:python3-scipy"  # ...but apt installed it
