"""Who ships a file: the package named next to every frame and library in a report.

Collected by the supervisor (it runs no user code, so it may extend its own sys.path with the
program's site-packages); the diagnoses read `Frame.package` and never look files up.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache

from numdoctor.core.stacks.model import Frame
from numdoctor.rules.run.culprit import is_standard_library
from numdoctor.snapshot.ownership import owning_package
from numdoctor.snapshot.package_names import package_label


def add_site_dirs(directories: list[str]) -> None:
    """Let ownership lookups see the program's site-packages when they differ from ours.

    Only ever called in the supervisor process, which runs no user code.
    """
    for directory in directories:
        if directory and os.path.isdir(directory) and directory not in sys.path:
            sys.path.append(directory)
            _package_of.cache_clear()


@lru_cache(maxsize=4096)
def _package_of(path: str) -> str:
    if not path:
        return ""
    if is_standard_library(path):
        return "Python standard library"
    owner = owning_package(path)
    if owner:
        return package_label(*owner)
    for marker in ("site-packages", "dist-packages"):
        parts = path.split(os.sep)
        if marker in parts:
            rest = parts[parts.index(marker) + 1:]
            if rest:
                return rest[0].removesuffix(".libs").split("-", 1)[0]
    if path.startswith(("/usr/lib", "/lib", "/usr/local/lib")):
        return "system library (no package manager knows it)"
    return ""


def package_of(path: str) -> str:
    """'torch 2.13.0', 'libc6 2.36-9 (apt)', 'Python standard library' or ''."""
    return _package_of(path)


def annotate(frames: list[Frame]) -> None:
    """Fill in `package` for every frame."""
    for frame in frames:
        if not frame.package:
            frame.package = package_of(frame.file)
