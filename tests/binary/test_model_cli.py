"""The binary facts in the Snapshot model, the CLI options and the rule documentation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from numdoctor.rules import all_rules, apply_rules
from numdoctor.snapshot.known_pairs import find_known_incompatible
from numdoctor.snapshot.model import (
    BinaryFacts,
    ExtensionModule,
    ModuleReload,
    NumpyBuild,
    PackageCopy,
    RequirementConflict,
    ShadowedPackage,
    Snapshot,
    SymbolClash,
    SymbolExporter,
)

CODES = ("ABI001", "ABI002", "RELOAD001", "RELOAD002", "VER001", "SYM001")


def _populated() -> Snapshot:
    snapshot = Snapshot()
    snapshot.process.rtld_global = True
    snapshot.binary = BinaryFacts(
        numpy=NumpyBuild(version="2.4.6", path="/site/numpy", loaded=True, api_version=0x15),
        scan="environment", scanned_files=3, numpy_users=2,
        extensions=[ExtensionModule(path="/site/old/_ext.so", module="old._ext",
                                    distribution="old", distribution_version="1.0",
                                    numpy_headers="1.x", markers=["numpy.core._multiarray_umath"],
                                    import_name="old._ext"),
                    ExtensionModule(path="/site/new/_ext.so", module="new._ext",
                                    distribution="new", distribution_version="3.0",
                                    numpy_headers="2.x", target_api="2.5",
                                    target_api_version=0x16)],
        reloads=[ModuleReload(module="numpy", how="reload", detail="reloaded")],
        shadowed=[ShadowedPackage(name="numpy", copies=[
            PackageCopy(path="/a/numpy", version="2.2.6", sys_path_index=0),
            PackageCopy(path="/site/numpy", version="2.4.6", sys_path_index=3)])],
        distributions={"numpy": "2.4.6", "scipy": "1.12.0"},
        conflicts=[RequirementConflict(distribution="x", version="1", requirement="numpy<2",
                                       dependency="numpy", installed="2.4.6")],
        symbol_clashes=[SymbolClash(symbols=["dgemm_"], libraries=[
            SymbolExporter(path="/l/a.so"), SymbolExporter(path="/l/b.so")])],
    )
    # As the collector matches them against the table of known pairs.
    snapshot.binary.known_incompatible = find_known_incompatible(snapshot.binary.distributions)
    return snapshot


def test_binary_facts_round_trip():
    snapshot = _populated()
    again = Snapshot.from_dict(snapshot.to_dict())
    assert again.binary == snapshot.binary


def test_snapshot_without_binary_section_still_loads():
    data = Snapshot().to_dict()
    del data["binary"]
    assert Snapshot.from_dict(data).binary == BinaryFacts()


def test_every_rule_fires_on_matching_facts_and_is_documented():
    codes = {f.code for f in apply_rules(_populated())}
    assert set(CODES) <= codes, codes
    documented = {r.code: r for r in all_rules()}
    for code in CODES:
        assert "**Fix.**" in documented[code].explanation


def test_known_pair_advice_on_synthetic_facts():
    (finding,) = [f for f in apply_rules(_populated()) if f.code == "VER001"
                  and f.title.startswith("scipy")]
    assert "scipy>=1.13.0" in finding.fix
    assert any("scipy.github.io" in line for line in finding.evidence)


def test_empty_facts_give_no_binary_findings():
    assert not [f for f in apply_rules(Snapshot()) if f.code in CODES]


@pytest.mark.parametrize("code", CODES)
def test_explain(code):
    result = subprocess.run([sys.executable, "-m", "numdoctor", "explain", code],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and code in result.stdout


def test_check_help_lists_the_options():
    result = subprocess.run([sys.executable, "-m", "numdoctor", "check", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert "--scan-abi" in result.stdout and "--confirm-abi" in result.stdout
