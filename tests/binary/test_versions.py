"""VER001: unmet requirements among installed numerical packages, and known-bad pairs."""

from __future__ import annotations

import textwrap

import pytest
from binary_helpers import collect_report, findings, run_check
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from numdoctor.snapshot.known_pairs import known_incompatibilities
from numdoctor.snapshot.requirements import find_conflicts, installed_distributions


def _dist_info(site, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    # A long description after the header block must not be parsed as headers.
    (info / "METADATA").write_text("\n".join(lines) + "\n\nRequires-Dist: not-a-header\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def conflicting_site(tmp_path):
    _dist_info(tmp_path, "demo-numkit", "1.0", "numpy<2,>=1.22", "scipy>=99",
               "numdoctor-missing-dep>=1", 'pandas>=1 ; extra == "frames"',
               'numpy<1 ; python_version < "3"')
    return tmp_path


def test_unmet_requirements_of_a_numerical_distribution(conflicting_site):
    import sys

    installed = installed_distributions([str(conflicting_site), *sys.path])
    involved, conflicts = find_conflicts(installed)
    assert involved["demo-numkit"] == "1.0" and "numpy" in involved
    by_dep = {c.dependency: c for c in conflicts if c.distribution == "demo-numkit"}
    assert set(by_dep) == {"numpy", "scipy", "numdoctor-missing-dep"}
    assert by_dep["numpy"].requirement == "numpy<2,>=1.22"
    assert by_dep["numdoctor-missing-dep"].installed == ""


@pytest.mark.slow
def test_ver001_findings_in_a_real_process(conflicting_site):
    report = collect_report("import numpy", pythonpath=[conflicting_site])
    titles = [f["title"] for f in findings(report, "VER001")]
    assert any(t.startswith("demo-numkit 1.0 requires numpy<2,>=1.22 but numpy 2.") for t in titles)
    assert any("numdoctor-missing-dep" in t and "not installed" in t for t in titles)


@pytest.mark.slow
def test_known_incompatible_pair_without_scanning(numpy1_package):
    # Bottleneck 1.3.7 is installed but not imported, and no --scan-abi: only the table knows.
    report = run_check("--import", "numpy", pythonpath=[numpy1_package])
    (finding,) = [f for f in findings(report, "VER001") if "bottleneck" in f["title"]]
    assert finding["severity"] == "error"
    assert finding["title"].startswith("bottleneck 1.3.7 does not work with numpy 2.")
    assert "bottleneck>=1.4.0" in finding["fix"]
    assert any(line.startswith("source: https://") for line in finding["evidence"])


def test_known_incompatibility_table_is_well_formed():
    pairs = known_incompatibilities()
    assert len(pairs) >= 8
    for pair in pairs:
        assert pair.source.startswith("https://"), pair
        assert not pair.affected.contains(Version(pair.fixed_in)), pair
        assert isinstance(pair.other_versions, SpecifierSet) and pair.problem


def test_metadata_header_parsing_stops_at_the_body(tmp_path):
    info = tmp_path / "x-1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(textwrap.dedent("""\
        Name: x
        Version: 1
        Requires-Dist: numpy>=1

        Requires-Dist: scipy
    """))
    (dist,) = installed_distributions([str(tmp_path)]).values()
    assert dist.requires == ["numpy>=1"]


def test_requirement_facts_are_cached_by_the_directories_that_hold_metadata(tmp_path,
                                                                           monkeypatch):
    import os
    import time

    from numdoctor.snapshot import requirements

    site, work, cache = tmp_path / "site", tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    _dist_info(site, "demo-numkit", "1.0", "numpy<2")
    _dist_info(site, "numpy", "2.4.6")
    monkeypatch.setenv("NUMDOCTOR_CACHE_DIR", str(cache))
    monkeypatch.delenv("NUMDOCTOR_NO_CACHE", raising=False)
    monkeypatch.setattr(requirements, "_REMEMBERED", {})
    path = [str(work), str(site)]

    installed, _, conflicts, _ = requirements.cached_conflicts(path)
    assert set(installed) == {"demo-numkit", "numpy"}
    assert [c.requirement for c in conflicts] == ["numpy<2"]
    (written,) = os.listdir(cache)

    # A new process, and a working directory whose files changed: the cache answers.
    requirements._REMEMBERED.clear()
    (work / "output.txt").write_text("changed")
    os.utime(work, ns=(time.time_ns() + 10**9,) * 2)
    assert requirements.cached_conflicts(path)[2] == conflicts
    assert os.listdir(cache) == [written]

    # A distribution installed into that directory: it now counts, and is read.
    requirements._REMEMBERED.clear()
    _dist_info(work, "numpy", "1.26.4")
    installed, _, conflicts, _ = requirements.cached_conflicts(path)
    assert installed["numpy"].version == "1.26.4" and conflicts == []
    assert len(os.listdir(cache)) == 2
