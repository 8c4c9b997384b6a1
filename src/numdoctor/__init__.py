"""numdoctor: find out why a numerical Python program hangs, crashes or returns garbage.

Importing numdoctor is cheap and has no side effects; each part loads on first use.
"""

from __future__ import annotations

from numdoctor._version import __version__

__all__ = ["CrashError", "Finding", "HangError", "Report", "Severity", "__version__", "check",
           "guard", "heartbeat", "isolate"]

_LAZY = {
    "check": ("numdoctor.api", "check"),
    "guard": ("numdoctor.protection", "guard"),
    "Finding": ("numdoctor.findings", "Finding"),
    "Report": ("numdoctor.findings", "Report"),
    "Severity": ("numdoctor.findings", "Severity"),
    "heartbeat": ("numdoctor.supervise.heartbeat", "heartbeat"),
    "isolate": ("numdoctor.supervise.isolate", "isolate"),
    "HangError": ("numdoctor.supervise.isolate", "HangError"),
    "CrashError": ("numdoctor.supervise.isolate", "CrashError"),
}


def load_ipython_extension(ipython) -> None:
    """`%load_ext numdoctor`: the %numdoctor and %%numdoctor_isolate magics (numdoctor.jupyter)."""
    from numdoctor.jupyter import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'numdoctor' has no attribute {name!r}")
