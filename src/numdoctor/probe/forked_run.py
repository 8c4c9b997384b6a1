"""`numdoctor run` inside a supervisor forked by the probe's fork server (`_zygote.py`).

The program was forked before this process imported numdoctor and waits on `go` for its
start: the environment that arms it (the run directory, the dump signal), its working
directory and its output streams. Everything after that, supervision, diagnosis and the
report, is `numdoctor run`'s own code, given the already-forked program as its start.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from numdoctor.core.forked import ForkedChild
from numdoctor.core.rundir import INJECT_DIR
from numdoctor.core.tree import CommandNotFound

# The sentinel's waits are halved for scenarios: a probe runs many short programs and a
# proven deadlock (a forked child in OpenMP) costs the probe its idle second twice.
PROOF_PACE = 0.5


def supervise_forked(argv: Sequence[str], program: int, go: socket.socket) -> int:
    """Run `numdoctor run ARGV` whose program is the forked `program` waiting on `go`."""
    from numdoctor.cli import UsageError, build_parser
    from numdoctor.commands import run as run_command

    def start(command: Sequence[str], *, env: Mapping[str, str], stdout: int | None,
              stderr: int | None, cwd: str | None = None) -> ForkedChild:
        if len(command) < 2 or command[1].startswith("-"):
            go.close()
            raise CommandNotFound(f"{' '.join(command)}: a forked program runs a script "
                                  "(python SCRIPT ARGS...)", 126)
        payload = json.dumps({"env": dict(env), "cwd": cwd or os.getcwd(),
                              "argv": list(command[1:]), "inject": INJECT_DIR}).encode()
        # Streams the supervisor does not interpose are ours, as a spawned child inherits.
        fds = [1 if stdout is None else stdout, 2 if stderr is None else stderr]
        try:
            socket.send_fds(go, [payload], fds)
            started = go.recv(2) == b"ok"
        except OSError:
            started = False
        finally:
            go.close()
        if not started:
            raise CommandNotFound(f"{command[-1]}: the forked program did not start", 126)
        return ForkedChild(program)

    try:
        args = build_parser("run").parse_args(["run", *argv])
        return run_command.run(args, start=start, proof_pace=PROOF_PACE)
    except UsageError as exc:
        print(f"numdoctor run: {exc}", file=sys.stderr, flush=True)
        return 2
