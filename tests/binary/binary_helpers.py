"""Helpers shared by the binary tests: run code or `numdoctor check` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, *, pythonpath: list[Path] | None = None, timeout: float = 180,
               args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter of this venv, with `pythonpath` first on sys.path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *(args or [])],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(REPO))


def run_check(*arguments: str, pythonpath: list[Path] | None = None,
              timeout: float = 300) -> dict:
    """`numdoctor check ... --format json` in a subprocess; the parsed report."""
    result = run_python(
        "import sys\nfrom numdoctor.cli import main\nsys.exit(main(sys.argv[1:]))",
        pythonpath=pythonpath, timeout=timeout,
        args=["check", *arguments, "--format", "json", "--fail-on", "never"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


# Collect in a subprocess and print the report as JSON: the process under inspection is the
# one the test set up, never pytest's own.
COLLECT_AND_REPORT = """
import json, sys
from numdoctor.findings import Report
from numdoctor.rules import apply_rules
from numdoctor.snapshot.collect import collect

snapshot = collect(scan_abi={scan_abi}, confirm_abi={confirm_abi})
report = Report(kind="check", findings=apply_rules(snapshot), snapshot=snapshot.to_dict())
print("@@REPORT@@" + json.dumps(report.to_dict()))
"""


def collect_report(setup: str, *, pythonpath: list[Path] | None = None, scan_abi: bool = False,
                   confirm_abi: bool = False, timeout: float = 240) -> dict:
    code = textwrap.dedent(setup) + COLLECT_AND_REPORT.format(scan_abi=scan_abi,
                                                             confirm_abi=confirm_abi)
    result = run_python(code, pythonpath=pythonpath, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("@@REPORT@@"))
    return json.loads(line[len("@@REPORT@@"):])


def findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]
