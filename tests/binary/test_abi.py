"""ABI001/ABI002 on real binaries: a published NumPy-1 wheel, the installed NumPy-2 stack,
and an extension compiled here against a newer NumPy C-API than the one that runs."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import pytest
from binary_helpers import collect_report, findings, run_check

from numdoctor.snapshot.abi import API_VERSIONS, match_numpy_message, numpy_build, read_markers


@pytest.mark.slow
def test_numpy1_wheel_is_found_statically_and_confirmed_by_import(numpy1_package):
    report = run_check("--import", "numpy", "--scan-abi", "--confirm-abi",
                       pythonpath=[numpy1_package])
    (finding,) = [f for f in findings(report, "ABI001") if "Bottleneck" in f["title"]]
    assert finding["severity"] == "error"
    assert "Bottleneck 1.3.7" in finding["title"]
    assert "NumPy 2." in finding["title"]
    evidence = "\n".join(finding["evidence"])
    assert str(numpy1_package) in evidence
    assert "numpy.core._multiarray_umath" in evidence
    # The runtime import quotes NumPy's own words.
    assert "compiled using NumPy 1.x cannot be run in NumPy 2." in evidence
    # The fix names the first release built for NumPy 2, from the data table, with its source.
    assert "Bottleneck>=1.4.0" in finding["fix"]
    assert "https://" in finding["fix"]
    extensions = report["snapshot"]["binary"]["extensions"]
    ours = [e for e in extensions if e["distribution"] == "Bottleneck"]
    assert {e["module"] for e in ours} >= {"bottleneck.move", "bottleneck.reduce"}
    assert all(e["numpy_headers"] == "1.x" for e in ours)
    assert any(e["runtime_status"] == "incompatible" for e in ours)
    # ABI001 already covers Bottleneck: the known-pair table must not report it again.
    assert not [f for f in findings(report, "VER001") if "bottleneck" in f["title"].lower()]


@pytest.mark.slow
def test_default_check_flags_a_numpy1_module_whose_import_failed(numpy1_package):
    # No --scan-abi: the failed import leaves the extension mapped, which the fast default
    # (mapped files only) reads.
    report = run_check("--import", "numpy,bottleneck", pythonpath=[numpy1_package])
    assert [a for a in report["snapshot"]["imports"]
            if a["module"] == "bottleneck" and a["status"] == "error"]
    (finding,) = findings(report, "ABI001")
    assert "Bottleneck 1.3.7" in finding["title"]
    assert report["snapshot"]["binary"]["scan"] == "loaded"


def test_numpy1_markers_of_the_real_wheel(numpy1_package):
    files = glob.glob(str(numpy1_package / "bottleneck" / "*.so"))
    assert files
    for path in files:
        markers = read_markers(path)
        assert markers is not None and markers.headers == "1.x", path
        assert "numpy._core._multiarray_umath" not in markers.found


def test_installed_numpy2_stack_is_not_flagged():
    """scipy, scikit-learn and torch of this venv are built for NumPy 2."""
    import scipy

    root = os.path.dirname(scipy.__file__)
    files = glob.glob(os.path.join(root, "**", "*.so"), recursive=True)
    users = [m for m in map(read_markers, files) if m is not None and m.headers]
    assert len(users) > 20
    assert {m.headers for m in users} == {"2.x"}
    assert all(API_VERSIONS[m.target_api] <= numpy_build().api_version
               for m in users if m.target_api)


@pytest.mark.slow
def test_whole_environment_scan_of_the_stock_venv_reports_nothing():
    report = run_check("--import", "numpy", "--scan-abi")
    binary = report["snapshot"]["binary"]
    assert binary["scan"] == "environment"
    assert binary["numpy_users"] > 50  # scipy, sklearn, torch... were read
    assert binary["extensions"] == []
    assert not findings(report, "ABI001") and not findings(report, "ABI002")


@pytest.mark.slow
def test_extension_needing_a_newer_numpy_c_api(newer_api_extension, other_numpy):
    # NumPy 2.2.6 (C-API 0x13) first on sys.path; the extension needs 2.4 (0x15).
    report = collect_report(
        """
        import numpy
        try:
            import newapi
        except Exception as exc:
            print("import failed:", exc)
        """,
        pythonpath=[other_numpy, newer_api_extension], confirm_abi=True,
    )
    binary = report["snapshot"]["binary"]
    assert binary["numpy"]["version"] == "2.2.6"
    assert binary["numpy"]["api_version"] == 0x13
    (ext,) = [e for e in binary["extensions"] if e["module"] == "newapi"]
    assert ext["target_api"] == "2.4" and ext["target_api_version"] == 0x15
    assert ext["loaded"] is True
    assert ext["runtime_status"] == "incompatible"
    assert "C-API version 0x15 (NumPy 2.4)" in ext["runtime_message"]
    (finding,) = findings(report, "ABI002")
    assert "needs NumPy >= 2.4" in finding["title"]
    assert "numpy>=2.4" in finding["fix"]
    assert not findings(report, "ABI001")


def test_numpy_messages_are_recognised():
    text = ("\nA module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.4.6 as it "
            "may crash. To support both 1.x and 2.x\n...\nAttributeError: _ARRAY_API not found")
    kind, message = match_numpy_message(text)
    assert kind == "numpy1-on-numpy2"
    assert message.startswith("A module that was compiled using NumPy 1.x cannot be run in "
                              "NumPy 2.4.6 as it may crash.")
    assert message.endswith("(AttributeError: _ARRAY_API not found)")
    kind, _ = match_numpy_message("ValueError: numpy.dtype size changed, may indicate binary "
                                  "incompatibility. Expected 96 from C header, got 88")
    assert kind == "dtype-size"
    kind, _ = match_numpy_message("RuntimeError: module compiled against API version 0x10 but "
                                  "this version of numpy is 0xe")
    assert kind == "api-too-new"
    assert match_numpy_message("ModuleNotFoundError: No module named 'x'") is None


def test_markers_are_remembered_on_disk_until_the_file_changes(tmp_path):
    import shutil

    import numpy._core._multiarray_umath as umath

    copy = tmp_path / "lib" / "_multiarray_umath.so"
    copy.parent.mkdir()
    shutil.copy2(umath.__file__, copy)
    env = {**os.environ, "NUMDOCTOR_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMDOCTOR_NO_CACHE", None)
    read = textwrap.dedent(f"""
        import sys
        from numdoctor.snapshot import abi
        if sys.argv[1] == "disk-only":  # any read of the file itself now fails the test
            abi._read_file_markers = lambda path: sys.exit("read " + path)
        print(abi.read_markers({str(copy)!r}))
        abi.save_markers()
    """)

    def markers(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", read, mode], capture_output=True,
                              text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = markers("read")
    assert "headers='2.x'" in first
    assert markers("disk-only") == first  # a new process answers from the cache
    copy.write_bytes(copy.read_bytes() + b"\0")  # the file changes: it is read again
    done = subprocess.run([sys.executable, "-c", read, "disk-only"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode != 0 and f"read {copy}" in done.stderr
