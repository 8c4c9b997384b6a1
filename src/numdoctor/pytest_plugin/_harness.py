"""pytest's own frames: between a test and the interpreter's entry in every stack, forty lines
long, and never where a test hangs. Reports and diagnoses leave them out."""

from __future__ import annotations

import re

# Frames of pytest, pluggy and this plugin between the test and the interpreter's entry: the
# same in every dump, and forty lines long.
_HARNESS = re.compile(r"[\\/](?:_pytest|pluggy)[\\/]|[\\/]numdoctor[\\/]pytest_plugin[\\/]|"
                      r"[\\/](?:pytest|py\.test)$|[\\/]pytest[\\/]__main__\.py$|^<frozen runpy>$")


def is_harness(path: str) -> bool:
    return bool(_HARNESS.search(path))
