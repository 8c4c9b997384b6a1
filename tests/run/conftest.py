"""Fixtures for tests/run; the helpers live in run_helpers.py, a module name no other test
folder uses (every folder has a conftest.py, so `from conftest import` is ambiguous)."""

from run_helpers import *  # noqa: F403
