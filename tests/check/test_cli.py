"""The command line as a user drives it: formats, exit codes, usage errors, explain."""

from __future__ import annotations

import json
import re
from pathlib import Path

from checkutil import check_json, codes, run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"numdoctor \d+\.\d+\.\d+\S*\n", result.stdout)


def test_text_report_names_libraries_and_summary():
    result = run_cli("check", "--import", "numpy")
    assert result.returncode == 0, result.stderr
    assert "Native libraries" in result.stdout
    assert "openblas" in result.stdout
    assert "Summary:" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when not a terminal


def test_bare_numdoctor_is_check_and_json_has_schema(tmp_path):
    result = run_cli("--format", "json", "--import", "numpy")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema_version"] == 1
    assert report["kind"] == "check"
    assert report["snapshot"]["schema_version"] == 1
    assert {"error", "warning", "info"} == set(report["summary"])


def test_markdown_is_paste_ready(tmp_path):
    out = tmp_path / "report.md"
    result = run_cli("check", "--import", "numpy", "--format", "markdown", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"report written to {out}" in result.stderr
    text = out.read_text()
    assert text.startswith("## numdoctor check report")
    assert "<details>" in text and "<summary>Environment snapshot</summary>" in text


def test_fail_on_thresholds():
    env = {"KMP_DUPLICATE_LIB_OK": "TRUE"}  # a warning-level finding, OMP003
    assert run_cli("check", "--import", "numpy", "--fail-on", "warning", env=env).returncode == 1
    assert run_cli("check", "--import", "numpy", "--fail-on", "error", env=env).returncode == 0
    assert run_cli("check", "--import", "numpy", "--fail-on", "never", env=env).returncode == 0


def test_usage_errors_are_one_line_with_status_2():
    for args in (["check", "--format", "xml"], ["check", "--import", "numpy;rm -rf /"],
                 ["check", "--import", ","], ["explain", "NOPE999"], ["frobnicate"],
                 ["check", "--timeout", "-1"], ["explain"]):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_unwritable_output_is_a_clear_error(tmp_path):
    result = run_cli("check", "--import", "numpy", "--output", str(tmp_path / "no" / "x.json"))
    assert result.returncode == 2
    assert "cannot write --output" in result.stderr


def test_explain_prints_the_rule():
    result = run_cli("explain", "omp002")
    assert result.returncode == 0
    assert result.stdout.startswith("## OMP002:")
    assert "Error #15" in result.stdout and "**Fix.**" in result.stdout


def test_rules_page_is_in_sync_with_the_registry():
    generated = run_cli("explain", "--all").stdout
    assert (ROOT / "docs" / "rules.md").read_text() == generated, (
        "docs/rules.md is stale: regenerate with `numdoctor explain --all > docs/rules.md`"
    )


def test_import_failures_become_findings_not_tracebacks(tmp_path):
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('broken build')\n")
    (tmp_path / "hangs_on_import.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "aborts_on_import.py").write_text("import os\nos.abort()\n")
    report = check_json(
        "--import", "raises_on_import,hangs_on_import,aborts_on_import,numpy,not_a_module_xyz",
        "--timeout", "4", env={"PYTHONPATH": str(tmp_path)},
    )
    found = codes(report)
    assert "RuntimeError: broken build" in found["IMP001"][0]["evidence"][0]
    hang = "\n".join(found["IMP002"][0]["evidence"])
    assert "hangs_on_import.py" in hang  # faulthandler's stack names the hanging line
    crash = "\n".join(found["IMP003"][0]["evidence"])
    assert "SIGABRT" in crash and "aborts_on_import.py" in crash
    assert found["IMP004"][0]["title"] == "module not_a_module_xyz is not installed"
    statuses = [(a["module"], a["status"]) for a in report["snapshot"]["imports"]]
    assert statuses == [("raises_on_import", "error"), ("hangs_on_import", "hang"),
                        ("aborts_on_import", "crash"), ("numpy", "ok"),
                        ("not_a_module_xyz", "missing")]


def test_check_called_in_process_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    from checkutil import run_python

    out = tmp_path / "report.json"
    done = run_python(f"""
        import gc
        from numdoctor.cli import main
        code = main(["check", "--import", "json", "--format", "json", "--output", {str(out)!r}])
        print(code, gc.isenabled())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]
    assert json.loads(out.read_text())["snapshot"]["imports"][0]["status"] == "ok"


def test_progress_is_shown_on_a_terminal_and_never_in_the_report(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    from checkutil import _env

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "numdoctor", "check", "--import", "json",
                             "--format", "json"], stdout=subprocess.PIPE, stderr=slave,
                            env=_env(None))
    os.close(slave)
    report = json.loads(proc.communicate(timeout=120)[0])
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the process has gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0
    assert report["snapshot"]["imports"][0]["module"] == "json"
    assert b"2/2" in shown  # the bar on the terminal: one import, then collecting
