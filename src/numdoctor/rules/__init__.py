"""Apply rules: pure functions from a Snapshot to Findings (second stage of the pipeline)."""

from numdoctor.rules.registry import Rule, all_rules, apply_rules, describe, get, rule

__all__ = ["Rule", "all_rules", "apply_rules", "describe", "get", "rule"]
