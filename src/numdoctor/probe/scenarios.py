"""Scenarios: import order x operation x threading environment x process mode.

Each scenario becomes one standalone Python script (`script()`): the same text is what the
probe runs and what a user attaches to a bug report. When scenarios run side by side the probe
adds a few lines that make each wait for its turn before the timed operation (`turns.py`);
the reproduction is the script without them.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field

from numdoctor.probe.canaries import Canary
from numdoctor.probe.turns import WAIT_FOR_TURN

# How the operation is exercised:
#   inprocess      the op once, in the interpreter that imported everything;
#   fork           the op in the parent, os.fork(), the op again in the child;
#   mp-fork        the op in the parent, then in a multiprocessing worker started with
#   mp-spawn       that start method (what DataLoader, Pool and joblib do).
#   mp-forkserver
MODES = ("inprocess", "fork", "mp-fork", "mp-spawn", "mp-forkserver")
FORKING_MODES = ("fork", "mp-fork")

# Threading environments tried for every scenario unless the user names others.
DEFAULT_ENVS: tuple[dict[str, str], ...] = ({}, {"OMP_NUM_THREADS": "1"})

OK_MARKER = "NUMDOCTOR-PROBE-OK"


@dataclass(frozen=True)
class Scenario:
    imports: tuple[str, ...]  # import order; the canary's module is imported last if absent
    canary: Canary
    mode: str = "inprocess"
    env: tuple[tuple[str, str], ...] = ()

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def with_env(self, **extra: str) -> Scenario:
        env = dict(self.env)
        env.update(extra)
        return Scenario(self.imports, self.canary, self.mode, tuple(sorted(env.items())))

    def with_mode(self, mode: str) -> Scenario:
        return Scenario(self.imports, self.canary, mode, self.env)

    def with_imports(self, imports: tuple[str, ...]) -> Scenario:
        return Scenario(imports, self.canary, self.mode, self.env)

    @property
    def label(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env)
        return (f"import {','.join(self.imports) or '-'} | {self.canary.name} | {self.mode}"
                + (f" | {env}" if env else ""))

    def all_imports(self) -> tuple[str, ...]:
        """The import statements in order, the canary's own module last if not named."""
        names = list(self.imports)
        if self.canary.module not in names:
            names.append(self.canary.module)
        return tuple(names)


def script(scenario: Scenario, *, take_turns: bool = False) -> str:
    """A standalone reproduction: exits 0 and prints OK_MARKER when the scenario passes.

    `take_turns` adds the wait for the probe's turn before the timed operation.
    """
    imports = "\n".join(f"import {name}" for name in scenario.all_imports())
    body = textwrap.indent(scenario.canary.code, "    ")
    env = "".join(f"#   {k}={v}\n" for k, v in scenario.env)
    head = (
        f"# numdoctor probe scenario: {scenario.label}\n"
        + (f"# environment (set before starting Python):\n{env}" if env else "")
        + f"# Run: {' '.join(f'{k}={v}' for k, v in scenario.env)} python this_file.py\n".replace(
            "# Run:  ", "# Run: ")
    )
    run = _MODE_CODE[scenario.mode]
    wait, waiting, done = ("", "", "")
    if take_turns:
        wait, waiting = f"{WAIT_FOR_TURN}\n\n", "    _turn = _wait_for_turn()\n"
        # The turn ends with the timed part, not with the interpreter's teardown.
        done = "    if _turn:\n        _turn.close()\n"
    return (
        f"{head}import os, sys, time\n{imports}\n\n\n"
        f"def op():\n{body}\n\n\n"
        f"{wait}"
        f"if __name__ == '__main__':\n"
        f"{waiting}"
        f"    start = time.perf_counter()\n"
        f"{textwrap.indent(run, '    ')}"
        f"    print('{OK_MARKER}', round(time.perf_counter() - start, 4), flush=True)\n"
        f"{done}"
    )


_MODE_CODE = {
    "inprocess": "op()\n",
    "fork": textwrap.dedent("""\
        op()
        pid = os.fork()
        if pid == 0:
            try:
                op()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"forked child failed: {os.waitstatus_to_exitcode(status)}")
    """),
}
for _method in ("fork", "spawn", "forkserver"):
    _MODE_CODE[f"mp-{_method}"] = textwrap.dedent(f"""\
        import multiprocessing
        op()
        worker = multiprocessing.get_context({_method!r}).Process(target=op)
        worker.start()
        worker.join()
        if worker.exitcode != 0:
            sys.exit(f"{_method} worker failed: exit code {{worker.exitcode}}")
    """)


@dataclass
class Plan:
    scenarios: list[Scenario] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requested modules not installed


def import_orders(modules: list[str], how: str) -> list[tuple[str, ...]]:
    """All permutations for up to 4 modules; beyond, a covering set.

    The covering set puts every module first once (rotations) and every ordered pair in both
    relative orders (each rotation and its reverse), which is what import-order bugs depend
    on: who initialises a shared runtime first.
    """
    if how == "given" or len(modules) <= 1:
        return [tuple(modules)]
    if len(modules) <= 4:
        return list(itertools.permutations(modules))
    orders: list[tuple[str, ...]] = []
    for shift in range(len(modules)):
        rotated = tuple(modules[shift:] + modules[:shift])
        for order in (rotated, rotated[::-1]):
            if order not in orders:
                orders.append(order)
    return orders


def plan(modules: list[str], canaries: list[Canary], *, orders: str = "all",
         modes: tuple[str, ...] = ("inprocess", "fork"),
         envs: tuple[dict[str, str], ...] = DEFAULT_ENVS) -> list[Scenario]:
    scenarios = []
    for order in import_orders(modules, orders):
        for canary in canaries:
            for mode in modes:
                for env in envs:
                    scenarios.append(Scenario(order, canary, mode, tuple(sorted(env.items()))))
    return scenarios
