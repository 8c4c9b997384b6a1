"""Collect facts: the Snapshot of a process (first stage of the pipeline)."""

from numdoctor.snapshot.model import (
    SNAPSHOT_SCHEMA_VERSION,
    CgroupInfo,
    FrameworkInfo,
    ImportAttempt,
    LoadedLibrary,
    ProcessInfo,
    Snapshot,
    SystemInfo,
)

__all__ = [
    "SNAPSHOT_SCHEMA_VERSION",
    "CgroupInfo",
    "FrameworkInfo",
    "ImportAttempt",
    "LoadedLibrary",
    "ProcessInfo",
    "Snapshot",
    "SystemInfo",
]
