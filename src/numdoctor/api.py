"""The `numdoctor.check()` entry point for notebooks and scripts."""

from __future__ import annotations

from collections.abc import Sequence

from numdoctor.findings import Report


def check(imports: Sequence[str] | None = None, *, isolated: bool | None = None,
          timeout: float = 120.0) -> Report:
    """Diagnose the numerical stack.

    Without arguments this looks at the *current* process as it is now: the libraries your
    notebook or script has loaded, its thread pools, its environment. With `imports` (or
    `isolated=True`) it imports those modules in that order in a fresh subprocess instead, so
    a hang or crash there becomes a finding rather than the end of your session.
    """
    from numdoctor.rules import apply_rules

    if isolated is None:
        isolated = imports is not None
    if isolated:
        from numdoctor.snapshot.isolated import collect_isolated

        snapshot = collect_isolated(list(imports or ()), timeout=timeout)
    else:
        if imports:
            raise ValueError("imports= needs isolated=True: numdoctor never imports modules "
                             "into the process it inspects")
        from numdoctor.snapshot.collect import collect

        snapshot = collect()
    return Report(kind="check", findings=apply_rules(snapshot), snapshot=snapshot.to_dict())
