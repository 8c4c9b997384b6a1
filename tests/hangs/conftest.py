"""Real hangs, observed the way `numdoctor run` observes them.

Each fixture program under programs/ really hangs. `observe()` starts it as a process tree in
its own session, with numdoctor's sitecustomize injected and a run directory (so every Python
process arms faulthandler and records the children it reaps), waits until the tree is stuck
(its "READY" line printed and the tree idle), dumps every thread with the real dump ladder
(py-spy), collects the wait facts, analyses them, then kills the tree.

Programs are observed once per session (the torch and TensorFlow ones take seconds to import)
and several at a time: every test of a program shares one observation.

Expected lines are never written in a test: a program marks them with `# expect: <label>`
comments, and `Hung.line(label)` finds them.
"""

from __future__ import annotations

import socket

import pytest
from hang_helpers import SLOW, Hung, Observations, program_of


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hang_program(name, *args, torchrun=False, idle=True): the fixture program "
        "a test observes (the `hung` fixture); '{omp_library}' and '{silent_server}' in args "
        "are replaced by those fixtures' values")


@pytest.fixture(scope="session")
def observations(request, tmp_path_factory):
    wanted = [p for p in map(program_of, request.session.items) if p is not None]
    values: dict[str, str] = {}
    if any("{omp_library}" in " ".join(args) for _, args, _ in wanted):
        values["omp_library"] = str(request.getfixturevalue("omp_library"))
    if any("{silent_server}" in " ".join(args) for _, args, _ in wanted):
        values["silent_server"] = str(request.getfixturevalue("silent_server"))
    found = Observations(values)
    for name, args, options in sorted(wanted, key=lambda w: not w[0].startswith(SLOW)):
        found.submit(name, args, options)
    yield found
    found.close()


@pytest.fixture
def hung(request, observations) -> Hung:
    program = program_of(request.node)
    assert program is not None, "a test using `hung` needs @pytest.mark.hang_program(...)"
    name, args, options = program
    observations.submit(name, args, options)
    return observations.get(name)


@pytest.fixture(scope="session")
def silent_server():
    """A listening TCP socket that never accepts: clients connect and wait forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()
