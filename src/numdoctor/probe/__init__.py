"""`numdoctor probe`: reproduce import-order and fork hangs in isolation, verify the fixes.

    from numdoctor.probe import ProbeOptions, probe, build_report
    report = build_report(probe(ProbeOptions(modules=["numpy", "torch"], fork=True, jobs=2)))

Entry points for other parts (the Dask fleet mode spreads a probe over workers with them):
`probe(options, progress)` runs a whole probe in this process and returns a ProbeResult;
`build_report(result)` turns it into a Report.
"""

from numdoctor.probe.canaries import CANARIES, Canary, register
from numdoctor.probe.engine import ProbeOptions, ProbeResult, count_scenarios, probe
from numdoctor.probe.report import build_report
from numdoctor.probe.scenarios import MODES, Scenario, script

__all__ = ["CANARIES", "MODES", "Canary", "ProbeOptions", "ProbeResult", "Scenario",
           "build_report", "count_scenarios", "probe", "register", "script"]
