"""The probe: plan scenarios, run them in parallel within a budget, then for each failure find
the smallest failing combination and re-run it with each mitigation to see which really work.
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from numdoctor.probe.canaries import CANARIES, Canary, canaries_for
from numdoctor.probe.forkserver import ForkServers
from numdoctor.probe.runner import Result, run_scenario, scenario_environment
from numdoctor.probe.scenarios import DEFAULT_ENVS, FORKING_MODES, MODES, Scenario, plan
from numdoctor.probe.turns import TurnKeeper

# The operation is "slow" when it takes this many times its time alone (and at least
# SLOW_MIN_EXTRA seconds more): below that, timing noise on a shared machine dominates.
SLOW_FACTOR = 3.0
SLOW_MIN_EXTRA = 0.5

Progress = Callable[[str, Result | None], None]


@dataclass
class ProbeOptions:
    modules: list[str]
    ops: list[str] | None = None  # canary names; None = every canary of the modules
    orders: str = "all"  # "all" or "given"
    fork: bool = False  # add fork, mp-fork, mp-spawn, mp-forkserver modes
    modes: tuple[str, ...] | None = None  # explicit process modes (overrides `fork`)
    envs: tuple[dict[str, str], ...] = DEFAULT_ENVS
    timeout: float = 60.0  # per scenario, hard
    hang_timeout: float = 5.0  # per scenario: no output and no CPU for this long
    jobs: int = 1
    budget: float | None = None  # seconds for the whole probe
    minimize: bool = True
    fresh: bool = False  # every scenario a fresh interpreter (no fork servers)


@dataclass
class Mitigation:
    description: str  # "with OMP_NUM_THREADS=1"
    scenario: Scenario
    result: Result | None = None

    @property
    def verified(self) -> bool:
        return self.result is not None and self.result.outcome in ("pass", "slow")


@dataclass
class Failure:
    """A group of failing scenarios that share operation, mode and environment."""

    results: list[Result]
    minimal: Result | None = None
    mitigations: list[Mitigation] = field(default_factory=list)

    @property
    def representative(self) -> Result:
        return self.minimal or self.results[0]


@dataclass
class ProbeResult:
    options: ProbeOptions
    missing: list[str] = field(default_factory=list)
    baselines: dict[str, Result] = field(default_factory=dict)  # canary name -> alone
    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    slow: list[Result] = field(default_factory=list)
    not_run: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def installed(modules: list[str]) -> tuple[list[str], list[str]]:
    present: list[str] = []
    missing: list[str] = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        (present if found else missing).append(module)
    return present, missing


def select_canaries(modules: list[str], ops: list[str] | None) -> list[Canary]:
    if ops is None:
        return canaries_for(modules)
    unknown = [op for op in ops if op not in CANARIES]
    if unknown:
        raise ValueError(f"unknown operation(s) {', '.join(unknown)}; known: "
                         f"{', '.join(CANARIES)}")
    return [CANARIES[op] for op in ops]


class _Runner:
    """Runs scenarios `jobs` at a time until the budget's deadline."""

    def __init__(self, options: ProbeOptions, progress: Progress | None) -> None:
        self.options = options
        self.progress = progress
        self.deadline = (time.monotonic() + options.budget) if options.budget else None
        self.skipped = 0
        self.done: dict[Scenario, Result] = {}  # the latest result of each scenario run
        # Scenarios of one import order and environment are forks of one interpreter that
        # imported its modules once (see forkserver.py).
        self._fork_dir: tempfile.TemporaryDirectory[str] | None = None
        self.servers: ForkServers | None = None
        if not options.fresh:
            self._fork_dir = tempfile.TemporaryDirectory(prefix="numdoctor-forks-")
            self.servers = ForkServers(self._fork_dir.name, keep=2 * max(1, options.jobs))
        # Side by side, the scenarios' operations take turns (see turns.py).
        self._turn_dir: tempfile.TemporaryDirectory[str] | None = None
        self.turns: TurnKeeper | None = None
        if options.jobs > 1:
            self._turn_dir = tempfile.TemporaryDirectory(prefix="numdoctor-turns-")
            try:
                self.turns = TurnKeeper(self._turn_dir.name)
            except OSError:
                # No Unix socket here (a socket path too long for the platform, say): the
                # scenarios then run without turns, which costs time and timing precision
                # but no verdict ("slow" ones are confirmed alone anyway).
                self.turns = None
        # `jobs` scenarios use the CPUs at once. Where operations take turns, a scenario whose
        # program has gone idle (a deadlock waiting for its proof, most often) gives its slot
        # to the next one, so up to twice as many may be under way.
        self.overlap = self.turns is not None
        self.slots = threading.Semaphore(max(1, options.jobs))
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, options.jobs) * (2 if self.overlap else 1))

    def run_all(self, scenarios: list[Scenario], *, reuse: bool = False
                ) -> list[Result | None]:
        """`reuse`: a scenario this probe has already run keeps that result instead of
        running again (a mitigation that is also a cell of the matrix: OMP_NUM_THREADS=1,
        another start method; a minimisation step that is another cell)."""
        todo = list(dict.fromkeys(s for s in scenarios if not (reuse and s in self.done)))
        self.prepare(todo)
        fresh = dict(zip(todo, self.pool.map(self._one, todo), strict=True))
        return [fresh[s] if s in fresh else self.done[s] for s in scenarios]

    def prepare(self, scenarios: list[Scenario]) -> None:
        """Start the fork servers these scenarios will need, in their order, while others run."""
        if self.servers is None:
            return
        turns = self.turns.address if self.turns else None
        self.servers.prepare([(s.all_imports(), scenario_environment(s, turns=turns))
                              for s in scenarios],
                             limit=self.options.timeout + self.options.hang_timeout + 60)

    def _one(self, scenario: Scenario) -> Result | None:
        self.slots.acquire()
        held = True

        def give_back() -> None:  # called in this thread: by run_scenario, then below
            nonlocal held
            if held:
                held = False
                self.slots.release()

        try:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.skipped += 1
                if self.progress:
                    self.progress(scenario.label, None)
                return None
            timeout = self.options.timeout
            if self.deadline is not None:
                timeout = max(1.0, min(timeout, self.deadline - time.monotonic()))
            result = run_scenario(scenario, timeout=timeout,
                                  hang_timeout=min(self.options.hang_timeout, timeout),
                                  turns=self.turns.address if self.turns else None,
                                  servers=self.servers,
                                  idle=give_back if self.overlap else None)
        finally:
            give_back()
        if self.progress:
            self.progress(scenario.label, result)
        if result is not None:
            self.done[scenario] = result
            if result.failed:
                # Its mitigations will run once the matrix is done: their servers can
                # import now, beside the scenarios still running.
                self.prepare([m.scenario for m in _mitigations(scenario)])
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.servers is not None:
            self.servers.close()
        if self._fork_dir is not None:
            self._fork_dir.cleanup()
        if self.turns is not None:
            self.turns.close()
        if self._turn_dir is not None:
            self._turn_dir.cleanup()


def count_scenarios(options: ProbeOptions) -> int:
    present, _ = installed(options.modules)
    canaries = select_canaries(present, options.ops)
    return len(_plan(options, present, canaries)) + len(canaries)


def _plan(options: ProbeOptions, present: list[str], canaries: list[Canary]) -> list[Scenario]:
    modes: tuple[str, ...] = ("inprocess",)
    if options.modes:
        modes = options.modes
    elif options.fork:
        modes = MODES
    return plan(present, canaries, orders=options.orders, modes=modes, envs=options.envs)


def probe(options: ProbeOptions, progress: Progress | None = None) -> ProbeResult:
    started = time.monotonic()
    present, missing = installed(options.modules)
    out = ProbeResult(options, missing=missing)
    canaries = select_canaries(present, options.ops)
    runner = _Runner(options, progress)
    try:
        # Each operation alone first: the reference for "slow", and the proof that the
        # operation itself works here.
        alone = [Scenario((c.module,), c) for c in canaries]
        scenarios = _plan(options, present, canaries)
        runner.prepare(alone + scenarios)
        for canary, result in zip(canaries, runner.run_all(alone), strict=True):
            if result is not None:
                out.baselines[canary.name] = result
        out.results = [r for r in runner.run_all(scenarios) if r is not None]
        _mark_slow(out)
        _confirm_slow(out, runner)
        out.failures = _group_failures(out.results)
        if options.minimize:
            _minimize_and_mitigate_all(out.failures, runner)
        out.not_run = runner.skipped
        out.notes.extend(runner.servers.notes if runner.servers else [])
    finally:
        runner.close()
    out.seconds = time.monotonic() - started
    return out


def _mark_slow(out: ProbeResult) -> None:
    for result in out.results:
        base = out.baselines.get(result.scenario.canary.name)
        if (result.outcome != "pass" or result.scenario.mode != "inprocess" or base is None
                or base.op_seconds is None or result.op_seconds is None):
            continue
        if result.op_seconds > max(SLOW_FACTOR * base.op_seconds,
                                   base.op_seconds + SLOW_MIN_EXTRA):
            result.outcome = "slow"
            result.detail = (f"{result.op_seconds:.2f} s against {base.op_seconds:.2f} s for "
                             f"the operation alone ({result.op_seconds / base.op_seconds:.1f}x)")
            out.slow.append(result)


def _confirm_slow(out: ProbeResult, runner: _Runner) -> None:
    """Measure each 'slow' verdict of a parallel run again with nothing else running.

    Scenarios that run side by side share the CPUs, and idle BLAS/OpenMP workers spin on
    them for a while after each task: an operation can look 3x slower because of its
    neighbour. Each slow scenario and its operation alone are re-run one after the other;
    the verdict stands only if it holds there too.
    """
    if runner.options.jobs <= 1 or not out.slow:
        return
    kept = []
    for result in out.slow:
        canary = result.scenario.canary
        base = runner._one(Scenario((canary.module,), canary))
        again = runner._one(result.scenario)
        if base is None or again is None:  # the budget ran out: keep what was seen
            kept.append(result)
            continue
        out.baselines[canary.name] = base
        index = next(i for i, r in enumerate(out.results) if r is result)
        out.results[index] = again
        if again.outcome == "pass" and base.op_seconds and again.op_seconds and \
                again.op_seconds > max(SLOW_FACTOR * base.op_seconds,
                                       base.op_seconds + SLOW_MIN_EXTRA):
            again.outcome = "slow"
            again.detail = (f"{again.op_seconds:.2f} s against {base.op_seconds:.2f} s for the "
                            f"operation alone ({again.op_seconds / base.op_seconds:.1f}x), "
                            "confirmed with nothing else running")
            kept.append(again)
    if len(kept) < len(out.slow):
        out.notes.append(f"{len(out.slow) - len(kept)} 'slow' result(s) of the parallel run "
                         "were not slow when run alone and count as passes")
    out.slow = kept


def _group_failures(results: list[Result]) -> list[Failure]:
    """One failure per operation, process mode and outcome; the threading environments and
    import orders that fail the same way are members of it (the mitigations re-test them)."""
    groups: dict[tuple, list[Result]] = {}
    for result in results:
        if result.failed:
            s = result.scenario
            groups.setdefault((s.canary.name, s.mode, result.outcome), []).append(result)
    # The plainest member first: fewest environment settings, then fewest imports.
    return [Failure(sorted(members, key=lambda r: (len(r.scenario.env),
                                                   len(r.scenario.imports))))
            for members in groups.values()]


def _still_fails(result: Result | None, like: Result) -> bool:
    return result is not None and result.outcome == like.outcome


def _minimize(failure: Failure, runner: _Runner) -> None:
    """Drop imports one at a time while the scenario still fails the same way."""
    current = failure.results[0]
    imports = list(current.scenario.imports)
    for module in list(imports):
        if module == current.scenario.canary.module or len(imports) <= 1:
            continue
        trial = [m for m in imports if m != module]
        (result,) = runner.run_all([current.scenario.with_imports(tuple(trial))], reuse=True)
        if result is not None and _still_fails(result, current):
            imports, current = trial, result
    failure.minimal = current


def _minimize_and_mitigate_all(failures: list[Failure], runner: _Runner) -> None:
    """Each failure's minimisation is a sequence of runs, one step after the other; the
    failures themselves are independent, so they proceed side by side and keep the runner's
    `jobs` busy (its pool still bounds how many scenarios run at once)."""
    def one(failure: Failure) -> None:
        _minimize(failure, runner)
        _mitigate(failure, runner)

    if runner.options.jobs <= 1 or len(failures) <= 1:
        for failure in failures:
            one(failure)
        return
    with ThreadPoolExecutor(max_workers=min(len(failures), 2 * runner.options.jobs)) as pool:
        list(pool.map(one, failures))


def _mitigate(failure: Failure, runner: _Runner) -> None:
    options = _mitigations(failure.representative.scenario)
    for mitigation, result in zip(options, runner.run_all([m.scenario for m in options],
                                                          reuse=True), strict=True):
        mitigation.result = result
    failure.mitigations = options


def _mitigations(base: Scenario) -> list[Mitigation]:
    """What may make `base` pass: each a variant of it to run."""
    options: list[Mitigation] = []
    env = base.env_dict
    if env.get("OMP_NUM_THREADS") != "1":
        options.append(Mitigation("with OMP_NUM_THREADS=1", base.with_env(OMP_NUM_THREADS="1")))
    if base.mode in FORKING_MODES:
        options.append(Mitigation('with start method "spawn"', base.with_mode("mp-spawn")))
        options.append(Mitigation('with start method "forkserver"',
                                  base.with_mode("mp-forkserver")))
    if env.get("MKL_THREADING_LAYER") != "GNU":
        options.append(Mitigation("with MKL_THREADING_LAYER=GNU",
                                  base.with_env(MKL_THREADING_LAYER="GNU")))
    module = base.canary.module
    others = [m for m in base.imports if m != module]
    if others and base.imports and base.imports[0] != module:
        options.append(Mitigation(f"importing {module} before {', '.join(others)}",
                                  base.with_imports((module, *others))))
    if len(base.imports) > 1:
        reverse = tuple(reversed(base.imports))
        if reverse[0] != module:
            options.append(Mitigation(f"with import order {', '.join(reverse)}",
                                      base.with_imports(reverse)))
    return options


# -- the same steps one at a time, for running a probe's parts elsewhere ---------------------
# numdoctor.fleet spreads a probe over Dask workers with these: each worker runs its share with
# `run_many`, the client judges each worker's results with `assess`, and each failure is sent
# back to the worker it failed on for `minimize_and_mitigate`. `probe()` is these steps in one
# process.

def plan_scenarios(options: ProbeOptions,
                   present: list[str]) -> tuple[list[Canary], list[Scenario]]:
    """The operations and the scenario matrix for `options` over the installed `present`
    modules (raises ValueError for an unknown operation)."""
    canaries = select_canaries(present, options.ops)
    return canaries, _plan(options, present, canaries)


def run_many(scenarios: list[Scenario], *, timeout: float, hang_timeout: float, jobs: int = 1,
             budget: float | None = None,
             progress: Progress | None = None) -> list[Result | None]:
    """Each scenario in its own supervised subprocess, `jobs` at a time, in order; None for
    those not started because `budget` seconds had passed."""
    runner = _Runner(ProbeOptions(modules=[], timeout=timeout, hang_timeout=hang_timeout,
                                  jobs=jobs, budget=budget), progress)
    try:
        return runner.run_all(scenarios)
    finally:
        runner.close()


def assess(out: ProbeResult) -> None:
    """Mark the results slower than their baselines as slow and group the failures, as
    `probe()` does once every scenario has run (fills `out.slow` and `out.failures`)."""
    _mark_slow(out)
    out.failures = _group_failures(out.results)


def minimize_and_mitigate(failure: Failure, *, timeout: float, hang_timeout: float,
                          jobs: int = 1, budget: float | None = None) -> Failure:
    """Find the failure's smallest failing import list, then re-run it with each mitigation
    (sets `failure.minimal` and `failure.mitigations`; mitigations not started within
    `budget` seconds keep no result)."""
    runner = _Runner(ProbeOptions(modules=[], timeout=timeout, hang_timeout=hang_timeout,
                                  jobs=jobs, budget=budget), None)
    try:
        _minimize(failure, runner)
        _mitigate(failure, runner)
    finally:
        runner.close()
    return failure
