"""numdoctor's pytest plugin, registered through the `pytest11` entry point.

It does nothing unless asked to. Without one of its options or markers it only adds its
options and its marker to pytest; no hook of it runs per test and nothing heavy is imported.

- `--numdoctor`: the numerical environment (BLAS/OpenMP libraries, their threads and owning
  packages, finding counts) in the session header, and the findings of a fresh check in the
  terminal summary.
- `--numdoctor-hang-timeout S`: every test runs in a subprocess; one that gives no result for
  S seconds is failed with the stacks of all its threads (Python and native), even when it is
  stuck in C code holding the GIL, and every process it started is killed.
- `@pytest.mark.numdoctor_isolate` / `--numdoctor-isolate`: the same subprocess, so that a
  segfault or an abort fails that test with a crash report instead of ending the session.

See docs/pytest-and-jupyter.md.
"""

from __future__ import annotations

import argparse
import json

import pytest

MARKER = "numdoctor_isolate"
CONTROLLER = "numdoctor-controller"
START_METHODS = ("auto", "fork", "spawn")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("numdoctor", "numdoctor: diagnose the numerical stack")
    group.addoption(
        "--numdoctor", action="store_true", default=False,
        help="show the numerical environment (BLAS/OpenMP libraries, threads, finding "
             "counts) in the header, and numdoctor's findings in the terminal summary.")
    group.addoption(
        "--numdoctor-hang-timeout", type=_seconds, default=None, metavar="S",
        help="run each test in a subprocess; fail a test that gives no result within S "
             "seconds with the stacks of all its threads (also while C code holds the GIL) "
             "and kill every process it started.")
    group.addoption(
        "--numdoctor-isolate", action="store_true", default=False,
        help="run every test in a subprocess, so a segfault or an abort fails that test with "
             "a crash report instead of ending the session (the numdoctor_isolate marker "
             "does this for single tests).")
    group.addoption(
        "--numdoctor-start-method", choices=START_METHODS, default="auto",
        help="how isolated tests get their subprocess: fork the pytest process (fast), or "
             "spawn a fresh interpreter (slow; needs no fork-safe state). 'auto' (default) "
             "forks unless a GNU OpenMP pool runs in the pytest process, where a forked "
             "child would deadlock (FORK001).")
    # Plumbing between the pytest process and a fresh interpreter it spawns as a worker.
    group.addoption("--numdoctor-worker", default=None, help=argparse.SUPPRESS)


@pytest.hookimpl(tryfirst=True)  # before junitxml & co. read their options (spawned child)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(hang_timeout=None): run this test in a subprocess, so that a crash fails "
        "only this test with a crash report; hang_timeout=S also fails it with the stacks of "
        "all threads when it gives no result within S seconds (numdoctor).")
    spec = config.getoption("numdoctor_worker")
    if spec:
        from numdoctor.pytest_plugin._serve import SpawnedWorker

        config.pluginmanager.register(SpawnedWorker(config, json.loads(spec)),
                                      "numdoctor-spawned-worker")
        return  # everything else is the business of the pytest process that spawned us
    if config.getoption("numdoctor"):
        from numdoctor.pytest_plugin._environment import EnvironmentSummary

        config.pluginmanager.register(EnvironmentSummary(), "numdoctor-environment")
    if config.getoption("numdoctor_hang_timeout") or config.getoption("numdoctor_isolate"):
        _register_runner(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the isolation runner only when a collected test carries the marker."""
    if config.getoption("numdoctor_worker"):
        return
    marked = [item for item in items if item.get_closest_marker(MARKER) is not None]
    for item in marked:
        _check_marker(item)
    if marked and not config.pluginmanager.has_plugin(CONTROLLER):
        _register_runner(config)


def _check_marker(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    assert marker is not None
    unknown = set(marker.kwargs) - {"hang_timeout"}
    if marker.args or unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER} takes only hang_timeout=<seconds>, "
            f"not {', '.join([*map(repr, marker.args), *sorted(unknown)])}")
    value = marker.kwargs.get("hang_timeout")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not value > 0):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{MARKER}(hang_timeout=...) must be a positive "
            f"number of seconds, not {value!r}")


def _register_runner(config: pytest.Config) -> None:
    from numdoctor.pytest_plugin._controller import Controller

    config.pluginmanager.register(Controller(config), CONTROLLER)
