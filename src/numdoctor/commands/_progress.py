"""A transient rich progress bar on stderr while a command works; nothing when stderr is not
a terminal (a pipe, a file, CI), so reports stay clean.

Each command subclasses `StderrProgress` with its columns and turns its own events into bar
updates. rich is imported only when a bar is shown: `numdoctor check` starts its collector
after this module is loaded, and must not pay for rich before it does.
"""

from __future__ import annotations

import sys
from typing import Any


class StderrProgress:
    description = ""  # the bar's text before the first event

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None
        self.task: Any = None

    def columns(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def update(self, *event: Any) -> None:
        raise NotImplementedError

    def __enter__(self):
        """The update callback to pass along, or None when no bar is shown."""
        if not sys.stderr.isatty() or self.total <= 0:
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(*self.columns(), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(self.description, total=self.total)
        self.bar.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
