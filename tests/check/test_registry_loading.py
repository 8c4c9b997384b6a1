"""`check` loads only the rule modules directly in numdoctor.rules: every snapshot check must
live there (the run-time diagnoses in rules/run and rules/hangs are not loaded by `check`)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
import numdoctor.rules.registry as registry
registry.load_snapshot_checks()
loaded = set(registry._SNAPSHOT_CHECKS)
heavy = sorted(m for m in sys.modules if m.startswith(("numdoctor.rules.hangs",
                                                       "numdoctor.rules.run")))
registry._load_all()
print(sorted(set(registry._SNAPSHOT_CHECKS) - loaded))
print(heavy)
print(len(loaded))
"""


def test_every_snapshot_check_is_found_without_loading_the_run_diagnoses():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]", f"snapshot checks outside the top of numdoctor.rules: {out[0]}"
    assert out[1] == "[]", f"check loaded the run diagnoses: {out[1]}"
    assert int(out[2]) > 10
