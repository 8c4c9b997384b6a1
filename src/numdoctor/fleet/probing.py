"""`numdoctor fleet --probe`: spread a `numdoctor probe` matrix over the workers of a cluster.

    >>> from numdoctor.probe import ProbeOptions
    >>> report = numdoctor.fleet.probe(client, ProbeOptions(["numpy", "torch"], fork=True))
    ...                                                   # doctest: +SKIP

The client plans the matrix once. Every worker first says which of the modules it has and
runs each operation alone (its baselines: "slow" is judged against the same host). Then the
scenarios are dealt out one at a time to free job slots of the workers that have their
modules, so a faster host takes more, and a worker that hangs or dies costs only what it had
in hand: those scenarios go to another worker, once. Each worker's results are judged against
its own baselines, and each failure goes back to the worker it failed on, to be minimised and
re-run with each mitigation there. `probe_report` merges it all into one fleet report.

What runs on a worker is a coroutine of this module, sent by reference through Dask's
out-of-band `Client._run` (see `runner`): the scenarios run as supervised subprocesses of the
worker process, from a thread, so the worker's event loop keeps answering its scheduler.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from numdoctor.fleet import runner
from numdoctor.fleet.api import ProgressBar
from numdoctor.fleet.probe_model import (
    CHECK,
    DEFAULT_TIMEOUT,
    FOLLOW_UP,
    SCENARIOS,
    SURVEY,
    FleetProbe,
    NotRun,
    Placement,
    Share,
)
from numdoctor.fleet.probe_worker import (
    follow_up_on_worker,
    run_on_worker,
    survey_worker,
)
from numdoctor.probe.engine import (
    Failure,
    ProbeOptions,
    ProbeResult,
    assess,
    plan_scenarios,
    select_canaries,
)
from numdoctor.probe.runner import Result
from numdoctor.probe.scenarios import Scenario

# Beyond a scenario's own limits (timeout + hang timeout), the time its supervisor may take to
# start, dump the stacks of a hung program and write its report.
SUPERVISOR_SLACK = 30.0
# How many times a scenario is handed to another worker after the one running it hung or died.
REASSIGN = 1
# Mitigations the probe may try for one failure (see engine._mitigate): bounds a follow-up.
MAX_MITIGATIONS = 6
# How long after a call's own deadline the client stops waiting on its event loop too.
_LOOP_GRACE = 5.0

Progress = Callable[[dict], None]


# -- the public entry point ------------------------------------------------------------------

def probe(client: Any, options: ProbeOptions, *, timeout: float = DEFAULT_TIMEOUT,
          jobs: int | None = None, check: bool = True, imports: Sequence[str] | None = None,
          progress: bool | None = None):
    """Spread the probe matrix of `options` over the workers of `client`'s cluster.

    Returns a `numdoctor.Report` of kind "fleet": with `check` (the default) the report of
    `numdoctor.fleet.check(client, imports=imports)` (findings per worker, heterogeneity
    diff) plus the probe; the probe's part is in `outcome["probe"]`, its findings say on
    which workers they were seen. `options.modules` empty means every known framework
    installed on some worker. `jobs` is the number of scenarios each worker runs at once
    (default: its number of Dask threads; `options.jobs`, the parallelism of a one-host
    probe, is not used).

    `timeout` bounds the fleet check, and how long a worker may take beyond its scenarios'
    own limits (`options.timeout` + `options.hang_timeout`) to answer: a worker that does
    not is reported hung (FLT002), one whose connection breaks lost (FLT003), and the
    scenarios it had are given to another worker once. `options.budget` bounds the whole
    probe. `progress` shows a progress bar on stderr (default: on a terminal or notebook).
    """
    from numdoctor.fleet.probe_report import build_report

    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if jobs is not None and jobs < 1:
        raise ValueError("jobs must be at least 1")
    if isinstance(imports, str):
        raise TypeError("imports must be a sequence of module names, not a string")
    validate(options)
    runner.require_sync_client(client)
    base = None
    if check:
        from numdoctor.fleet.api import check as fleet_check

        base = fleet_check(client, imports=imports, timeout=timeout, progress=progress)
        workers = dict(base.outcome["workers"]) if base.outcome else {}
        scheduler = str((base.outcome or {}).get("scheduler_address", ""))
    else:
        identity = runner.scheduler_identity(client, timeout=timeout)
        workers = dict(identity.get("workers") or {})
        scheduler = str(identity.get("address") or runner.scheduler_address(client))
    shares = [_share(address, info, jobs, checked=check) for address, info in workers.items()]
    with ProbeProgressBar(progress) as bar:
        result = Spread(client, options, shares, scheduler_address=scheduler, timeout=timeout,
                        progress=bar).run()
    return build_report(result, base)


def validate(options: ProbeOptions) -> None:
    """Raise ValueError for options no worker could run (before any worker is asked)."""
    from numdoctor.probe.scenarios import MODES

    select_canaries(list(options.modules), options.ops)
    unknown = [m for m in options.modes or () if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    if options.orders not in ("all", "given"):
        raise ValueError(f"orders must be 'all' or 'given', not {options.orders!r}")
    for name in ("timeout", "hang_timeout"):
        if getattr(options, name) <= 0:
            raise ValueError(f"{name} must be positive")
    if options.budget is not None and options.budget <= 0:
        raise ValueError("budget must be positive")


def _share(address: str, info: dict[str, Any], jobs: int | None, *, checked: bool) -> Share:
    name = str(info.get("name", ""))
    nthreads = info.get("nthreads")
    share = Share(address=address, name="" if name == address else name,
                  host=str(info.get("host") or ""), hostname=str(info.get("hostname") or ""),
                  jobs=jobs or (nthreads if isinstance(nthreads, int) and nthreads > 0 else 1))
    status = info.get("status", runner.OK) if checked else runner.OK
    if status != runner.OK:  # it failed the fleet check, which reports it: not asked again
        share.status, share.stage = str(status), CHECK
    return share


# -- the client's side -----------------------------------------------------------------------

@dataclass
class _Job:
    scenario: Scenario
    tried: list[str] = field(default_factory=list)  # workers that failed while holding it


@dataclass
class _Request:
    share: Share
    job: _Job
    expires: float  # monotonic time after which the client gives up on its event loop too


class Spread:
    """Survey the workers, deal the scenarios out, follow the failures up: one probe."""

    def __init__(self, client: Any, options: ProbeOptions, shares: list[Share], *,
                 scheduler_address: str, timeout: float,
                 progress: Progress | None = None) -> None:
        self.client = client
        self.options = options
        self.grace = timeout
        self.progress = progress
        self.started = time.monotonic()
        self.deadline = self.started + options.budget if options.budget else None
        self.out = FleetProbe(options, scheduler_address, shares, timeout=timeout,
                              report_missing=bool(options.modules))
        self.pending: collections.deque[_Job] = collections.deque()
        self.in_flight: dict[concurrent.futures.Future, _Request] = {}
        self.busy: collections.Counter[str] = collections.Counter()
        self.held: dict[str, list[Scenario]] = collections.defaultdict(list)

    def run(self) -> FleetProbe:
        self._survey()
        self._plan()
        self._deal()
        for share in self.out.shares:
            if share.result is not None:
                assess(share.result)
                if share.status != runner.OK and share.result.failures:
                    self._untried(share, share.result.failures,
                                  f"the worker {_STATUS_WORDS.get(share.status, 'failed')} "
                                  f"during its {share.stage}")
        if self.options.minimize:
            self._follow_up()
        self.out.seconds = round(time.monotonic() - self.started, 3)
        return self.out

    # -- limits

    def _scenario_limits(self) -> tuple[float, float, float]:
        """(timeout, hang timeout, the most one scenario may take on a worker), within the
        budget that is left."""
        timeout = self.options.timeout
        left = self._budget_left()
        if left is not None:
            timeout = max(1.0, min(timeout, left))
        hang = min(self.options.hang_timeout, timeout)
        return timeout, hang, timeout + hang + SUPERVISOR_SLACK

    def _budget_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _budget_spent(self) -> bool:
        left = self._budget_left()
        return left is not None and left <= 0

    # -- 1. survey: what each worker has, and each operation alone there

    def _survey(self) -> None:
        options = self.options
        asked = list(options.modules) or _known_frameworks()
        canaries = select_canaries(asked, options.ops)
        self.out.canaries = canaries
        to_find = _unique([*asked, *(c.module for c in canaries)])
        shares = [s for s in self.out.shares if s.status == runner.OK]
        self._emit({"event": "survey", "workers": len(shares)})
        timeout, hang, limit = self._scenario_limits()
        futures, longest = {}, 0.0
        for share in shares:
            survey_limit = math.ceil(len(canaries) / share.jobs) * limit + 10.0
            longest = max(longest, survey_limit)
            futures.update(runner.start_on_workers(
                self.client, survey_worker, timeout=survey_limit + self.grace,
                workers=[share.address],
                args=(to_find, canaries, timeout, hang, share.jobs, self._budget_left(),
                      survey_limit)))
        answers = runner.wait_all(futures, timeout=longest + self.grace) if futures else {}
        for share in shares:
            answer = answers[share.address]
            payload = answer.value if answer.ok and isinstance(answer.value, dict) else None
            if payload is None or payload.get("status") != runner.OK:
                self._fail(share, answer, SURVEY, payload)
                continue
            share.hostname = str(payload.get("hostname", ""))
            share.pid = payload.get("pid")
            share.python = str(payload.get("python", ""))
            share.environment = dict(payload.get("environment") or {})
            share.present = list(payload.get("present") or [])
            missing = [m for m in asked if m not in share.present]
            share.result = ProbeResult(options, missing=missing if options.modules else [])
            for canary, baseline in zip(canaries, payload.get("baselines") or [], strict=False):
                if baseline is not None:
                    share.result.baselines[canary.name] = baseline

    # -- 2. plan: the matrix over the modules that some worker has

    def _plan(self) -> None:
        asked = list(self.options.modules) or _known_frameworks()
        surveyed = [s for s in self.out.shares if s.surveyed]
        self.out.modules = [m for m in asked if any(m in s.present for s in surveyed)]
        if self.out.report_missing:
            self.out.missing = [m for m in asked if m not in self.out.modules]
        canaries, scenarios = plan_scenarios(self.options, self.out.modules)
        if surveyed:
            self.out.canaries = canaries
        self.pending.extend(_Job(s) for s in scenarios)
        self._emit({"event": "start", "total": len(scenarios),
                    "workers": len(self._active())})
        if not surveyed:
            reason = ("no worker answered the survey" if self.out.shares
                      else "the cluster has no workers")
            self._drop_pending(reason)

    # -- 3. deal: one scenario per free job slot, until every one has run or cannot

    def _deal(self) -> None:
        while True:
            self._dispatch()
            if not self.in_flight:
                break
            wake = min(r.expires for r in self.in_flight.values()) - time.monotonic()
            done, _ = concurrent.futures.wait(
                list(self.in_flight), timeout=max(0.05, wake + _LOOP_GRACE),
                return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                request = self.in_flight.pop(future, None)
                if request is not None:
                    self._settle(request, _result_of(future, request.share.address))
            # A call whose own deadline could not even fire: the client's loop is stuck.
            for future, request in list(self.in_flight.items()):
                if time.monotonic() > request.expires + _LOOP_GRACE:
                    future.cancel()
                    del self.in_flight[future]
                    self._settle(request, runner.MemberResult(
                        request.share.address, runner.HANG,
                        error="no answer (the client's event loop did not respond either)"))
        self._drop_pending(None)

    def _dispatch(self) -> None:
        if self.pending and self._budget_spent():
            self._drop_pending("the budget ran out before it started")
            return
        placed = True
        while placed and self.pending:
            placed = False
            for share in self._active():
                if self.busy[share.address] >= share.jobs:
                    continue
                job = next((j for j in self.pending if _can_run(share, j.scenario)), None)
                if job is None:
                    continue
                self.pending.remove(job)
                self._start(share, job)
                placed = True
        # What no live worker can run will not become runnable: say so now.
        for job in list(self.pending):
            if not any(_can_run(s, job.scenario) for s in self._active()):
                self.pending.remove(job)
                self._not_run(job, self._why_unplaceable(job))

    def _start(self, share: Share, job: _Job) -> None:
        timeout, hang, limit = self._scenario_limits()
        futures = runner.start_on_workers(
            self.client, run_on_worker, timeout=limit + self.grace, workers=[share.address],
            args=(job.scenario, timeout, hang, limit))
        request = _Request(share, job, time.monotonic() + limit + self.grace)
        self.in_flight[futures[share.address]] = request
        self.busy[share.address] += 1
        self.held[share.address].append(job.scenario)

    def _settle(self, request: _Request, answer: runner.MemberResult) -> None:
        share, job = request.share, request.job
        self.busy[share.address] -= 1
        if job.scenario in self.held[share.address]:
            self.held[share.address].remove(job.scenario)
        payload = answer.value if answer.ok and isinstance(answer.value, dict) else None
        if payload is None:
            self._fail(share, answer, SCENARIOS, None, holding=job)
            return
        result = payload.get("result")
        if not isinstance(result, Result):  # its runner thread is stuck: a hang, not a loss
            result = Result(job.scenario, "hang", float(payload.get("seconds") or 0.0),
                            detail=str(payload.get("error") or "no result"))
        assert share.result is not None
        share.result.results.append(result)
        self.out.placements.append(Placement(share.address, result, list(job.tried)))
        self._emit({"event": "scenario", "label": job.scenario.label,
                    "outcome": result.outcome, "worker": share.address})

    def _fail(self, share: Share, answer: runner.MemberResult, stage: str,
              payload: dict | None, holding: _Job | None = None) -> None:
        """The worker hung, died or failed: stop using it and give its scenarios back."""
        first = share.status == runner.OK
        if first:
            if payload is not None:  # it answered, saying its own work was stuck
                share.status = str(payload.get("status") or runner.ERROR)
                share.error = str(payload.get("error", ""))
                share.detail = str(payload.get("stack") or payload.get("traceback") or "")
            else:
                share.status, share.error, share.detail = (answer.status, answer.error,
                                                           answer.traceback)
            share.stage = stage
            share.in_hand = [s.label for s in self.held[share.address]]
            if holding is not None:
                share.in_hand.insert(0, holding.scenario.label)
            self._emit({"event": "worker", "label": share.label, "status": share.status,
                        "stage": stage})
        if holding is not None:
            self._give_back(holding, share)
        # Its other calls are abandoned: their scenarios go elsewhere now, not after the
        # deadline of each.
        for future, request in list(self.in_flight.items()):
            if request.share is share:
                future.cancel()
                del self.in_flight[future]
                self.busy[share.address] -= 1
                self._give_back(request.job, share)
        self.held[share.address].clear()

    def _give_back(self, job: _Job, share: Share) -> None:
        job.tried.append(share.address)
        if len(job.tried) <= REASSIGN:
            self.pending.appendleft(job)
        else:
            words = {runner.HANG: "hung", runner.LOST: "was lost", runner.ERROR: "failed"}
            self._not_run(job, "; ".join(
                f"worker {a} {words.get(self._status(a), self._status(a))} while running it"
                for a in job.tried))

    def _status(self, address: str) -> str:
        share = self.out.share(address)
        return share.status if share else "?"

    def _not_run(self, job: _Job, reason: str) -> None:
        self.out.not_run.append(NotRun(job.scenario, reason, list(job.tried)))
        self._emit({"event": "scenario", "label": job.scenario.label, "outcome": "not-run",
                    "worker": ""})

    def _drop_pending(self, reason: str | None) -> None:
        while self.pending:
            job = self.pending.popleft()
            self._not_run(job, reason or self._why_unplaceable(job))

    def _why_unplaceable(self, job: _Job) -> str:
        if self._budget_spent():
            return "the budget ran out before it started"
        needed = sorted(_tops(job.scenario.all_imports()))
        surveyed = [s for s in self.out.shares if s.surveyed]
        if not any(_tops(job.scenario.all_imports()) <= _tops(s.present) for s in surveyed):
            return f"no worker has all of {', '.join(needed)}"
        tried = f" after worker {', '.join(job.tried)} failed" if job.tried else ""
        return f"no worker with {', '.join(needed)} was left{tried}"

    def _active(self) -> list[Share]:
        return [s for s in self.out.shares if s.status == runner.OK and s.surveyed]

    # -- 4. follow up: each failure minimised and mitigated on the worker it failed on

    def _follow_up(self) -> None:
        futures, longest = {}, 0.0
        work = [s for s in self._active() if s.result and s.result.failures]
        if work:
            self._emit({"event": "follow-up", "failures": sum(
                len(s.result.failures) for s in work if s.result)})
        if work and self._budget_spent():
            for share in work:
                self._untried(share, share.result.failures if share.result else [],
                              "the budget ran out before the follow-up")
            return
        timeout, hang, limit = self._scenario_limits()
        for share in work:
            assert share.result is not None
            failures = share.result.failures
            waves = sum(max(0, len(f.results[0].scenario.imports) - 1)
                        + math.ceil(MAX_MITIGATIONS / share.jobs) for f in failures)
            follow_limit = waves * limit + 10.0
            longest = max(longest, follow_limit)
            futures.update(runner.start_on_workers(
                self.client, follow_up_on_worker, timeout=follow_limit + self.grace,
                workers=[share.address],
                args=(failures, timeout, hang, share.jobs, self._budget_left(), follow_limit)))
        answers = runner.wait_all(futures, timeout=longest + self.grace) if futures else {}
        for share in work:
            assert share.result is not None
            answer = answers[share.address]
            payload = answer.value if answer.ok and isinstance(answer.value, dict) else None
            done = list((payload or {}).get("failures") or [])
            for index, failure in enumerate(done[:len(share.result.failures)]):
                share.result.failures[index] = failure
            rest = share.result.failures[len(done):]
            if payload is None or payload.get("status") != runner.OK:
                self._fail(share, answer, FOLLOW_UP, payload)
                words = _STATUS_WORDS.get(share.status, "failed")
                self._untried(share, rest, f"the worker {words} during the follow-up")
            elif rest:
                self._untried(share, rest, "the follow-up did not finish in time")

    def _untried(self, share: Share, failures: list[Failure], reason: str) -> None:
        for failure in failures:
            share.untried[failure.representative.scenario.label] = reason

    def _emit(self, event: dict) -> None:
        if self.progress is not None:
            self.progress(event)


_STATUS_WORDS = {runner.HANG: "hung", runner.LOST: "was lost", runner.ERROR: "failed"}


def _result_of(future: concurrent.futures.Future, address: str) -> runner.MemberResult:
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        return runner.MemberResult(address, runner.HANG, error="the call was cancelled")
    except BaseException as exc:  # the coroutine itself failed: a bug, but report it
        return runner.MemberResult(address, runner.ERROR, error=f"{type(exc).__name__}: {exc}")


def _tops(modules: Sequence[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _can_run(share: Share, scenario: Scenario) -> bool:
    return _tops(scenario.all_imports()) <= _tops(share.present)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _known_frameworks() -> list[str]:
    from numdoctor.snapshot.known import KNOWN_FRAMEWORKS

    return list(KNOWN_FRAMEWORKS)


# -- progress --------------------------------------------------------------------------------

class ProbeProgressBar(ProgressBar):
    """The fleet check's progress bar, with the probe's own events."""

    first_description = "probe"

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "survey":
            self.bar.update(self.task, description=f"probe: {event['workers']} workers run "
                                                   "each operation alone")
        elif kind == "start":
            self.bar.update(self.task, total=event["total"], completed=0,
                            description=f"probe: scenarios on {event['workers']} workers")
        elif kind == "scenario":
            self.bar.advance(self.task)
        elif kind == "follow-up":
            self.bar.update(self.task, description=f"probe: minimising {event['failures']} "
                                                   "failure(s) on their workers")
        elif kind == "worker":
            self.bar.console.print(f"numdoctor fleet: {event['label']}: {event['status']} "
                                   f"during the probe's {event['stage']}", highlight=False,
                                   markup=False)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
