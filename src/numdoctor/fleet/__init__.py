"""Fleet mode: the same diagnosis on every member of a Dask cluster, and how they differ.

    >>> import numdoctor.fleet
    >>> report = numdoctor.fleet.check(client)          # doctest: +SKIP

`check` returns a `numdoctor.Report` (kind "fleet"); `probe(client, ProbeOptions(...))`
spreads a `numdoctor probe` matrix over the workers and returns the same kind.
`run_on_workers` / `run_on_scheduler` are the deadline-bounded primitives both are built
on, for other stages that need to run something on every worker. Importing this package does
not import dask.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MemberResult", "check", "probe", "run_on_scheduler", "run_on_workers"]

_LAZY = {
    "check": ("numdoctor.fleet.api", "check"),
    "probe": ("numdoctor.fleet.probing", "probe"),
    "MemberResult": ("numdoctor.fleet.runner", "MemberResult"),
    "run_on_workers": ("numdoctor.fleet.runner", "run_on_workers"),
    "run_on_scheduler": ("numdoctor.fleet.runner", "run_on_scheduler"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'numdoctor.fleet' has no attribute {name!r}")
