"""`--numdoctor`: the numerical environment in the session header, findings at the end."""

from __future__ import annotations

from typing import Any

import pytest

from numdoctor.findings import Report, sort_findings

_FAMILIES = ("blas", "openmp")
_FAMILY_NAMES = {"blas": "BLAS", "openmp": "OpenMP"}


def library_line(lib: dict[str, Any]) -> str:
    from numdoctor.render._facts import short_path
    from numdoctor.rules._evidence import VENDOR_NAMES

    name = VENDOR_NAMES.get(lib.get("vendor", ""), lib.get("vendor", "?"))
    details = [lib["version"]] if lib.get("version") else []
    if lib.get("threading_layer"):
        details.append(lib["threading_layer"])
    if lib.get("num_threads") is not None:
        details.append(f"{lib['num_threads']} threads")
    owner = lib.get("distribution") or "not from pip"
    if lib.get("distribution_version"):
        owner += f" {lib['distribution_version']}"
    detail = f" ({', '.join(details)})" if details else ""
    return (f"{_FAMILY_NAMES.get(lib.get('family', ''), lib.get('family', ''))} {name}{detail} "
            f"[{owner}] {short_path(lib.get('path', ''))}")


def _libraries(report: Report) -> list[dict[str, Any]]:
    libraries = (report.snapshot or {}).get("libraries", [])
    return [lib for lib in libraries if lib.get("family") in _FAMILIES]


def _counts(report: Report) -> str:
    counts = report.counts()
    return (f"{counts['error']} error(s), {counts['warning']} warning(s), "
            f"{counts['info']} info")


def _check() -> Report:
    import numdoctor

    return numdoctor.check()


class EnvironmentSummary:
    """Registered by --numdoctor."""

    def __init__(self) -> None:
        self.at_start: Report | None = None

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        report = self.at_start = _check()
        system = (report.snapshot or {}).get("system", {})
        lines = [f"numdoctor: {system.get('effective_cpus', '?')} effective CPU(s) "
                 f"({system.get('cpu_count', '?')} online); findings now: {_counts(report)}"]
        libraries = _libraries(report)
        if not libraries:
            lines.append("numdoctor: no BLAS/OpenMP library loaded yet (tests load them)")
        lines += [f"numdoctor: {library_line(lib)}" for lib in libraries]
        return lines

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        from numdoctor.redact import redact_text

        report = _check()

        def write(line: str, **markup: bool) -> None:
            terminalreporter.write_line(redact_text(line), **markup)

        terminalreporter.write_sep("=", "numdoctor")
        before = {lib.get("path") for lib in _libraries(self.at_start)} if self.at_start else set()
        loaded = [lib for lib in _libraries(report) if lib.get("path") not in before]
        if loaded:
            write("BLAS/OpenMP libraries the tests loaded into this process:")
            for lib in loaded:
                write(f"  {library_line(lib)}")
        findings = sort_findings(report.findings)
        if not findings:
            write("no findings: the numerical stack of this process looks consistent")
            return
        write(f"findings of a check at the end of the session: {_counts(report)}")
        for finding in findings:
            where = f" [{finding.where}]" if finding.where else ""
            write(f"{finding.severity.value.upper():7} {finding.code}{where}: {finding.title}",
                  red=finding.severity.value == "error",
                  yellow=finding.severity.value == "warning")
        write(f"details: numdoctor explain {findings[0].code} (and the other codes); the full "
              "report with evidence: python -c 'import numdoctor; print(numdoctor.check())' "
              "after the same imports")
