"""Apply rules: pure functions from facts to Findings (the second stage of the pipeline).

Every module of this package is found and imported by the registry; each declares its codes
beside the checks that emit them.
"""

from numdoctor.rules.registry import Rule, Stage, all_rules, apply_rules, declare, get, rule

__all__ = ["Rule", "Stage", "all_rules", "apply_rules", "declare", "get", "rule"]
