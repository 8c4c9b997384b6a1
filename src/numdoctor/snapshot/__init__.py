"""Collect facts: the Snapshot of a process (first stage of the pipeline).

The model classes load on first use: this package is on the start-up path of `numdoctor
check`, which forks its collector before anything heavy is imported.
"""

_MODEL_NAMES = (
    "SNAPSHOT_SCHEMA_VERSION", "CgroupInfo", "FrameworkInfo", "ImportAttempt", "LoadedLibrary",
    "ProcessInfo", "Snapshot", "SystemInfo",
)
__all__ = list(_MODEL_NAMES)


def __getattr__(name: str):
    if name in _MODEL_NAMES:
        from numdoctor.snapshot import model

        return getattr(model, name)
    raise AttributeError(f"module 'numdoctor.snapshot' has no attribute {name!r}")
