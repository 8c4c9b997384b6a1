"""The `numdoctor.check()` entry point for notebooks and scripts."""

from __future__ import annotations

from collections.abc import Sequence

from numdoctor.findings import Report


def check(imports: Sequence[str] | None = None, *, isolated: bool | None = None,
          timeout: float = 120.0, scan_abi: bool = False, confirm_abi: bool = False) -> Report:
    """Diagnose the numerical stack.

    Without arguments this looks at the *current* process as it is now: the libraries your
    notebook or script has loaded, its thread pools, its environment. With `imports` (or
    `isolated=True`) it imports those modules in that order in a fresh subprocess instead, so
    a hang or crash there becomes a finding rather than the end of your session.

    `scan_abi` and `confirm_abi` are `numdoctor check --scan-abi/--confirm-abi`: read every
    compiled file of the environment for the NumPy it was built for (not only the loaded
    ones), and import each suspicious one in a fresh interpreter for NumPy's own message.
    """
    from numdoctor.rules import apply_rules

    if isolated is None:
        isolated = imports is not None
    if isolated:
        from numdoctor.snapshot.isolated import collect_isolated

        snapshot = collect_isolated(list(imports or ()), timeout=timeout, scan_abi=scan_abi,
                                    confirm_abi=confirm_abi)
    else:
        if imports:
            raise ValueError("imports= needs isolated=True: numdoctor never imports modules "
                             "into the process it inspects")
        from numdoctor.snapshot.collect import collect

        snapshot = collect(scan_abi=scan_abi, confirm_abi=confirm_abi)
    return Report(kind="check", findings=apply_rules(snapshot), snapshot=snapshot.to_dict())
