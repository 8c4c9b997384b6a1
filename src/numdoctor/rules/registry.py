"""The rule registry: one code, one documentation, one check (after ruff's).

A code is declared once, in the module that emits it, beside the check:

- `@rule(code, title, severity)` on a check `check(facts, rule) -> Iterable[Finding]`. The
  docstring is the explanation `numdoctor explain` prints; the decorator hands the check its
  own `Rule`, so the check never repeats its code string, and callers pass the facts alone.
  Checks of a snapshot (`stage=Stage.CHECK`, the default) are run by `apply_rules()`; checks
  of other facts (a run's exit, a hung tree, a probe's results) are called by their stage.
- `declare(code, title, severity, doc, stage)` for a code that one function chooses among
  several (the crash classifier picks SIG001-SIG007 by the signal): the function uses the
  returned `Rule`.

Every module under `numdoctor.rules` is imported on first use, found by walking the package:
a new rule is its own file (plus its test), with no list to update.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from numdoctor.findings import Finding, Severity

R = TypeVar("R")


class Stage(str, enum.Enum):
    """Which part of numdoctor emits a code (what `numdoctor explain` says)."""

    CHECK = "check"
    RUN = "run"
    PROBE = "probe"
    FLEET = "fleet"


@dataclass(frozen=True)
class Rule:
    """A finding code: its title, usual severity, explanation and the stage that emits it."""

    code: str
    title: str
    severity: Severity  # the usual severity; a finding may be raised or lowered with reason
    doc: str  # the explanation as written (a docstring, indented)
    stage: Stage = Stage.CHECK

    @property
    def source(self) -> str:
        return self.stage.value

    @property
    def explanation(self) -> str:
        """Markdown: what it means, why it matters, how to fix it."""
        # Cleaned on demand: inspect is a heavy import for the `check` start-up path.
        import inspect

        return inspect.cleandoc(self.doc)

    def finding(
        self,
        evidence: Iterable[str] = (),
        *,
        why: str = "",
        fix: str = "",
        severity: Severity | None = None,
        title: str | None = None,
        where: str = "",
    ) -> Finding:
        return Finding(
            code=self.code,
            severity=severity or self.severity,
            title=title or self.title,
            evidence=tuple(evidence),
            why=why,
            fix=fix,
            where=where,
        )


_RULES: dict[str, Rule] = {}
_SNAPSHOT_CHECKS: dict[str, Check[Iterable[Finding]]] = {}


def _register(rule_: Rule) -> Rule:
    if rule_.code in _RULES:
        raise ValueError(f"rule code {rule_.code} registered twice")
    _RULES[rule_.code] = rule_
    return rule_


class Check(Generic[R]):
    """A check with its Rule bound: call it with the facts (and whatever else the check
    takes); `.rule` is the Rule it emits."""

    def __init__(self, function: Callable[..., R], rule: Rule) -> None:
        self.function = function
        self.rule = rule
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.function(*args, rule=self.rule, **kwargs)


def rule(code: str, title: str, severity: Severity,
         stage: Stage = Stage.CHECK) -> Callable[[Callable[..., R]], Check[R]]:
    """Register `check(facts, rule, ...)`; returns it with its Rule bound."""

    def decorate(function: Callable[..., R]) -> Check[R]:
        registered = _register(Rule(code, title, severity, function.__doc__ or "", stage))
        bound = Check(function, registered)
        if stage is Stage.CHECK:
            _SNAPSHOT_CHECKS[code] = bound  # type: ignore[assignment]  # findings, by contract
        return bound

    return decorate


def declare(code: str, title: str, severity: Severity, doc: str, stage: Stage) -> Rule:
    """Register a code that a function beside this declaration chooses among several."""
    return _register(Rule(code, title, severity, doc, stage))


def get(code: str) -> Rule:
    _load_all()
    return _RULES[code.upper()]


def all_rules() -> list[Rule]:
    _load_all()
    return sorted(_RULES.values(), key=lambda r: r.code)


def apply_rules(snapshot: Any) -> list[Finding]:
    """Every snapshot check on one snapshot. A check that raises is a bug, reported as such."""
    load_snapshot_checks()
    findings: list[Finding] = []
    for code in sorted(_SNAPSHOT_CHECKS):
        try:
            findings.extend(_SNAPSHOT_CHECKS[code](snapshot))
        except Exception as exc:
            findings.append(Finding(
                code="ND000", severity=Severity.WARNING,
                title=f"rule {code} failed on this snapshot",
                evidence=(f"{type(exc).__name__}: {exc}",),
                fix="Please report this at the numdoctor issue tracker with the JSON report.",
            ))
    return findings


@functools.cache
def load_snapshot_checks() -> None:
    """Import the modules directly in this package: the snapshot checks live there. The
    run-time diagnoses live in subpackages (`run/`, `hangs/`) whose imports a `check` need not
    pay for (a test keeps every snapshot check at the top)."""
    import importlib
    import pkgutil

    import numdoctor.rules as package

    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if not module.ispkg:
            importlib.import_module(module.name)


@functools.cache
def _load_all() -> None:
    # Importing the modules registers their rules; done lazily so `numdoctor --version`
    # stays instant. Walking the package means no hand-kept list to forget.
    import importlib
    import pkgutil

    import numdoctor.rules as package

    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
