"""`numdoctor.fleet.check(client)`: diagnose every member of a Dask cluster in one report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numdoctor.findings import Report

DEFAULT_TIMEOUT = 120.0


def check(client: Any, *, imports: Sequence[str] | None = None,
          timeout: float = DEFAULT_TIMEOUT, progress: bool | None = None) -> Report:
    """Collect facts on every worker, the scheduler and this client; compare them.

    `client` is a synchronous `distributed.Client`. Without `imports` each worker describes
    its own process as it is now (what its tasks have loaded, its thread pools); with
    `imports` every member imports those modules in that order in a fresh subprocess on its
    host, so the comparison is between installations rather than between histories.

    `timeout` bounds the whole collection: a member that has not answered by then is
    reported as hung (FLT002), one whose connection breaks as lost (FLT003); this call
    never waits longer. `progress` shows a progress bar on stderr (default: when stderr is a
    terminal or a notebook).
    """
    from numdoctor.fleet.collect import collect_fleet
    from numdoctor.fleet.report import build_report

    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if isinstance(imports, str):
        raise TypeError("imports must be a sequence of module names, not a string")
    modules = None if imports is None else [str(m) for m in imports]
    with ProgressBar(progress) as bar:
        facts = collect_fleet(client, imports=modules, timeout=timeout, progress=bar)
    return build_report(facts)


class ProgressBar:
    """A rich progress bar on stderr while members answer; a no-op when not wanted.

    Subclasses (the fleet probe's bar) change only `first_description` and `update`.
    """

    first_description = "asking the scheduler for its workers"

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        enabled = self.enabled
        if enabled is None:
            enabled = console.is_terminal or console.is_jupyter
        if not enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
        )

        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), console=console, transient=True)
        self.task = self.bar.add_task(self.first_description, total=None)
        self.bar.start()
        return self.update

    def update(self, event: dict) -> None:
        if event.get("event") == "start":
            self.bar.update(self.task, total=event["total"],
                            description=f"collecting on {event['workers']} workers, the "
                                        "scheduler and the client")
        elif event.get("event") == "member":
            self.bar.advance(self.task)
            if event.get("status") != "ok":
                self.bar.console.print(f"numdoctor fleet: {event['label']}: {event['status']}",
                                       highlight=False, markup=False)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
