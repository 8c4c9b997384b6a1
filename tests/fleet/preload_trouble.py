"""Dask worker preload that makes numdoctor's collection misbehave on this worker.

NUMDOCTOR_TEST_TROUBLE selects how:
- "slow": collection blocks (without the GIL) after touching NUMDOCTOR_TEST_MARKER, so the
  test can kill the worker mid-collection;
- "stall": collection blocks without the GIL, the worker's event loop stays alive;
- "freeze": collection blocks in C code *holding* the GIL: the whole worker freezes.
"""

import ctypes
import os
import pathlib
import time

import numdoctor.fleet.remote as remote

_MODE = os.environ["NUMDOCTOR_TEST_TROUBLE"]
_MARKER = os.environ.get("NUMDOCTOR_TEST_MARKER")


def troubled_gather_facts(imports, import_timeout):
    if _MARKER:
        pathlib.Path(_MARKER).write_text(str(os.getpid()))
    if _MODE == "freeze":
        ctypes.PyDLL(None).sleep(600)  # PyDLL keeps the GIL during the call
    else:
        time.sleep(600)
    raise AssertionError("unreachable")


remote.gather_facts = troubled_gather_facts
