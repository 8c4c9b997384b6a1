"""Helpers for the `check` tests: run numdoctor and fresh interpreters for real."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    # Another tool (threadpoolctl in this very pytest process) may have set it.
    env.pop("KMP_DUPLICATE_LIB_OK", None)
    env.update(extra or {})
    return env


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a fresh interpreter on `code`."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=_env(env), timeout=timeout, cwd=cwd)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numdoctor", *args], capture_output=True,
                          text=True, env=_env(env), timeout=timeout)


def check_json(*args: str, env: dict[str, str] | None = None) -> dict:
    result = run_cli("check", "--format", "json", "--fail-on", "never", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def codes(report: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["code"], []).append(finding)
    return found


def module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def inprocess_check(setup: str, *, env: dict[str, str] | None = None) -> dict:
    """Run `setup` in a fresh interpreter, then numdoctor.check() in that same process."""
    code = textwrap.dedent(setup) + textwrap.dedent("""
        import json, numdoctor
        from numdoctor.render import report_data
        print("@@REPORT@@" + json.dumps(report_data(numdoctor.check())))
    """)
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("@@REPORT@@", 1)[1])
