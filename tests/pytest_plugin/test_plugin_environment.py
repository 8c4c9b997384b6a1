"""--numdoctor: the environment in the header, the findings in the terminal summary; and a
plugin that stays out of the way when it is not asked for."""

from __future__ import annotations

import re
import textwrap


def test_header_and_summary_describe_the_numerical_stack(run_pytest, pytester):
    pytester.makeconftest("import numpy")  # loaded before the header is written
    pytester.makepyfile(test_env=textwrap.dedent("""\
        def test_uses_scipy():
            import scipy.linalg  # a second OpenBLAS, loaded by a test
            assert scipy.linalg.norm([3.0, 4.0]) == 5.0
    """))
    result, _ = run_pytest("--numdoctor")
    result.assert_outcomes(passed=1)
    lines = result.outlines
    header = lines[:lines.index("collected 1 item")]
    assert any(re.fullmatch(r"numdoctor: \d+ effective CPU\(s\) \(\d+ online\); findings now: "
                            r"\d+ error\(s\), \d+ warning\(s\), \d+ info", line)
               for line in header), header
    assert any(re.match(r"numdoctor: BLAS OpenBLAS \(.*threads\) \[numpy [\d.]+\] "
                        r"numpy\.libs/", line) for line in header), header
    summary = lines[next(i for i, line in enumerate(lines)
                         if re.fullmatch(r"=+ numdoctor =+", line)):]
    assert any(re.match(r"  BLAS OpenBLAS .*\[scipy [\d.]+\] scipy\.libs/", line)
               for line in summary), summary
    assert any(re.match(r"WARNING +BLAS001: ", line) for line in summary), summary
    assert any(line.startswith("details: numdoctor explain BLAS001") for line in summary)


def test_without_options_the_plugin_is_inert(run_pytest, pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result, _ = run_pytest()
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert re.search(r"^plugins: .*numdoctor-", out, re.M), "the plugin was not loaded"
    assert not re.search(r"^numdoctor", out, re.M)
    assert "numdoctor isolation" not in out
    assert "-- numdoctor --" not in out
