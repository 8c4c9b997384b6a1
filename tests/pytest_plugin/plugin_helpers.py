"""Helpers for the pytest plugin tests."""

from __future__ import annotations

import psutil


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped does not run)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
