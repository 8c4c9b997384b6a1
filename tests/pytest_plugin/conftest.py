"""Real pytest sessions in subprocesses (pytester), with numdoctor's plugin loaded from its
entry point exactly as users get it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


@pytest.fixture
def run_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
               ) -> Callable[..., tuple[pytest.RunResult, float]]:
    """Run pytest in a fresh process in pytester's directory: (result, seconds it took)."""
    # threadpoolctl (imported by in-process checks elsewhere in this suite) sets this, and it
    # would hide the OpenMP errors some sessions provoke.
    monkeypatch.delenv("KMP_DUPLICATE_LIB_OK", raising=False)

    def run(*args: str, timeout: float = 120) -> tuple[pytest.RunResult, float]:
        start = time.monotonic()
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args,
                                               timeout=timeout)
        return result, time.monotonic() - start

    return run

