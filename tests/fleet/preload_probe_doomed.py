"""Dask worker preload: this worker runs its probe baselines, then, in the first matrix
scenario it is given, touches NUMDOCTOR_TEST_MARKER and

- "block" (default): blocks without the GIL, so the test can kill it while it holds that
  scenario;
- "freeze": blocks in C code holding the GIL: the whole worker freezes.
"""

import ctypes
import os
import pathlib
import threading
import time

import numdoctor.probe.engine as engine

_MARKER = os.environ["NUMDOCTOR_TEST_MARKER"]
_MODE = os.environ.get("NUMDOCTOR_TEST_DOOM", "block")
_BASELINES = int(os.environ.get("NUMDOCTOR_TEST_BASELINES", "1"))
# Dask imports a preload file twice (import, then reload): patch the real function only.
_real_run_scenario = getattr(engine, "_real_run_scenario", engine.run_scenario)
engine._real_run_scenario = _real_run_scenario
_lock = threading.Lock()
_calls = 0


def doomed_run_scenario(scenario, **kwargs):
    global _calls
    with _lock:
        _calls += 1
        call = _calls
    if call <= _BASELINES:
        return _real_run_scenario(scenario, **kwargs)
    pathlib.Path(_MARKER).write_text(scenario.label)
    if _MODE == "freeze":
        ctypes.PyDLL(None).sleep(600)  # PyDLL keeps the GIL during the call
    else:
        time.sleep(600)
    raise AssertionError("unreachable")


engine.run_scenario = doomed_run_scenario
