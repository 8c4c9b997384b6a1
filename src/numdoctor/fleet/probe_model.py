"""What a fleet probe brings back: each worker's share, where each scenario ran, what did not
run, and the whole. Plain data, read by the scheduler, the report and the rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from numdoctor.fleet import runner
from numdoctor.probe.canaries import Canary
from numdoctor.probe.engine import ProbeOptions, ProbeResult
from numdoctor.probe.runner import Result
from numdoctor.probe.scenarios import Scenario

SURVEY, SCENARIOS, FOLLOW_UP, CHECK = "survey", "scenarios", "follow-up", "fleet check"
DEFAULT_TIMEOUT = 120.0


@dataclass
class Share:
    """One worker and its part of the probe."""

    address: str
    name: str = ""
    host: str = ""  # as Dask knows it (an IP address, usually)
    hostname: str = ""  # as the worker's machine calls itself
    jobs: int = 1  # scenarios it runs at once
    status: str = runner.OK  # ok, or how it failed: error, hang, lost
    stage: str = ""  # where it failed: survey, scenarios, follow-up (or fleet check: unused)
    error: str = ""
    detail: str = ""  # traceback, or the stack of a stuck thread
    pid: int | None = None
    python: str = ""
    present: list[str] = field(default_factory=list)  # modules it has (of those asked)
    environment: dict[str, str] = field(default_factory=dict)  # INHERITED variables it sets
    result: ProbeResult | None = None  # its baselines, results, failures, slow ones
    in_hand: list[str] = field(default_factory=list)  # scenarios it had when it failed
    untried: dict[str, str] = field(default_factory=dict)  # failure label -> why not followed up

    @property
    def label(self) -> str:
        return f"worker {self.address}"

    @property
    def machine(self) -> str:
        if self.hostname and self.host and self.hostname != self.host:
            return f"{self.hostname} ({self.host})"
        return self.hostname or self.host

    @property
    def surveyed(self) -> bool:
        return self.result is not None


@dataclass
class Placement:
    """A scenario that ran, the worker it ran on, and the workers that lost it before."""

    worker: str
    result: Result
    moved_from: list[str] = field(default_factory=list)


@dataclass
class NotRun:
    scenario: Scenario
    reason: str
    tried: list[str] = field(default_factory=list)  # workers that failed while holding it


@dataclass
class FleetProbe:
    options: ProbeOptions
    scheduler_address: str
    shares: list[Share]
    modules: list[str] = field(default_factory=list)  # present on at least one worker
    missing: list[str] = field(default_factory=list)  # asked for, present on none
    report_missing: bool = True  # False when the modules were the default set
    canaries: list[Canary] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    seconds: float = 0.0

    def share(self, address: str) -> Share | None:
        return next((s for s in self.shares if s.address == address), None)
