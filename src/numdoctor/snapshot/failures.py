"""Collection steps that may fail without costing the rest of the report.

Every step of collecting runs through `Steps.run`: an unexpected exception becomes a record
(the step, the exception in one line, where it was raised) that the snapshot carries and the
ND001 rule reports, and the step's fallback value stands in for its result. Standard library
only: this runs in the inspected process right after the user's imports.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def describe_failure(step: str, exc: BaseException) -> dict[str, str]:
    """{"step", "error", "where"}: the exception in one line and its innermost frame."""
    message = " ".join(str(exc).split())
    error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    tb = exc.__traceback__
    where = ""
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        where = f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"
    return {"step": step, "error": error[:300], "where": where}


class Steps:
    """Runs collection steps, keeping one record per failed step (not one per item)."""

    def __init__(self, errors: list[dict[str, str]] | None = None) -> None:
        self.errors: list[dict[str, str]] = [] if errors is None else errors

    def run(self, step: str, action: Callable[[], T], fallback: U) -> T | U:
        try:
            return action()
        except Exception as exc:
            self.record(step, exc)
            return fallback

    def record(self, step: str, exc: BaseException) -> None:
        if not any(error["step"] == step for error in self.errors):
            self.errors.append(describe_failure(step, exc))
