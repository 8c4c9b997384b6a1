"""Fixtures for tests/fleet; the helpers live in fleet_helpers.py, a module name no other test
folder uses (every folder has a conftest.py, so `from conftest import` is ambiguous)."""

from fleet_helpers import *  # noqa: F403
