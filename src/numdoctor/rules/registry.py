"""The rule registry: one code, one documentation, one check.

Snapshot rules are pure functions `Snapshot -> Iterable[Finding]` registered with `@rule`.
Codes that other stages emit (`run`'s crash classifier, `probe`'s outcomes, the import
supervisor) are registered with `describe()` so `numdoctor explain` and docs/rules.md cover
every code the tool can print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from numdoctor.findings import Finding, Severity
from numdoctor.snapshot.model import Snapshot

Check = Callable[[Snapshot], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    code: str
    title: str
    severity: Severity  # the usual severity; a finding may be raised or lowered with reason
    doc: str  # the explanation as written (a docstring, indented)
    check: Check | None = None  # None: emitted by another stage (run, probe, ...)
    source: str = "check"  # which stage emits it

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


def _register(rule_: Rule) -> Rule:
    if rule_.code in _RULES:
        raise ValueError(f"rule code {rule_.code} registered twice")
    _RULES[rule_.code] = rule_
    return rule_


def rule(code: str, title: str, severity: Severity) -> Callable[[Check], Check]:
    """Register a snapshot rule; its docstring is the explanation `numdoctor explain` prints."""

    def decorate(check: Check) -> Check:
        _register(Rule(code, title, severity, check.__doc__ or "", check))
        return check

    return decorate


def describe(code: str, title: str, severity: Severity, explanation: str,
             source: str) -> Rule:
    """Register a code that a stage other than the snapshot rules emits."""
    return _register(Rule(code, title, severity, explanation, None, source))


def get(code: str) -> Rule:
    _load_all()
    return _RULES[code.upper()]


def all_rules() -> list[Rule]:
    _load_all()
    return sorted(_RULES.values(), key=lambda r: r.code)


def apply_rules(snapshot: Snapshot) -> list[Finding]:
    """Every snapshot rule on one snapshot. A rule that raises is a bug, reported as such."""
    _load_all()
    findings: list[Finding] = []
    for rule_ in sorted(_RULES.values(), key=lambda r: r.code):
        if rule_.check is None:
            continue
        try:
            findings.extend(rule_.check(snapshot))
        except Exception as exc:
            findings.append(Finding(
                code="ND000", severity=Severity.WARNING,
                title=f"rule {rule_.code} failed on this snapshot",
                evidence=(f"{type(exc).__name__}: {exc}",),
                fix="Please report this at the numdoctor issue tracker with the JSON report.",
            ))
    return findings


def _load_all() -> None:
    # Importing the modules registers their rules; done lazily so `numdoctor --version`
    # stays instant.
    from numdoctor.rules import (  # noqa: F401
        binary,
        blas,
        collection,
        fleet,
        fork,
        mkl,
        openmp,
        probe,
        runtime,
        threads,
    )
