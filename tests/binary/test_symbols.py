"""SYM001 and the ELF reader, on libraries compiled here and on the installed wheels."""

from __future__ import annotations

import glob
import os

import pytest
from binary_helpers import collect_report, findings

from numdoctor.snapshot.elf import ElfFile, exported_symbols
from numdoctor.snapshot.symbols import PROBE_SYMBOLS

_LOAD = """
import ctypes, os, sys
{flags}
a = ctypes.CDLL({a!r}, mode={mode})
b = ctypes.CDLL({b!r}, mode={mode})
"""


@pytest.mark.slow
def test_rtld_global_with_two_blas_exporters(fake_blas):
    a, b = fake_blas
    report = collect_report(_LOAD.format(
        flags="sys.setdlopenflags(sys.getdlopenflags() | os.RTLD_GLOBAL)", a=str(a),
        b=str(b), mode="os.RTLD_GLOBAL"))
    assert report["snapshot"]["process"]["rtld_global"] is True
    (finding,) = findings(report, "SYM001")
    text = "\n".join(finding["evidence"])
    assert "RTLD_GLOBAL" in text and str(a) in text and str(b) in text
    assert "dgemm_" in text and "dgesdd_" in text
    assert "dgetrf_" not in text and "dpotrf_" not in text  # hidden / undefined


@pytest.mark.slow
def test_same_libraries_without_rtld_global_are_facts_only(fake_blas):
    a, b = fake_blas
    load = _LOAD.format(flags="", a=str(a), b=str(b), mode="os.RTLD_LOCAL")
    # The default check does not read symbol tables when RTLD_GLOBAL is off (SYM001 needs it).
    quick = collect_report(load)
    assert quick["snapshot"]["binary"]["symbol_clashes"] == []
    assert not findings(quick, "SYM001")
    # The whole-environment scan records the clash as a fact, still without a finding.
    report = collect_report(load, scan_abi=True)
    clashes = report["snapshot"]["binary"]["symbol_clashes"]
    assert [c["symbols"] for c in clashes] == [["dgemm_", "dgesdd_"]]
    assert not findings(report, "SYM001")


def test_exported_symbols_of_compiled_library(fake_blas):
    a, _ = fake_blas
    assert exported_symbols(str(a), PROBE_SYMBOLS) == ("dgemm_", "dgesdd_")


def test_hash_lookup_agrees_with_pyelftools_on_a_real_openblas():
    elftools = pytest.importorskip("elftools.elf.elffile")
    import scipy

    libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "*openblas*.so"))
    if not libs:
        pytest.skip("this scipy does not vendor OpenBLAS")
    with open(libs[0], "rb") as fh:
        elf = elftools.ELFFile(fh)
        exported = [s.name for s in elf.get_section_by_name(".dynsym").iter_symbols()
                    if s["st_shndx"] != "SHN_UNDEF"
                    and s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC")
                    and s["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
                    and s["st_other"]["visibility"] in ("STV_DEFAULT", "STV_PROTECTED")]
    assert len(exported) > 1000
    sample = [*exported[::7], "numdoctor_absent_symbol_", "dgemm_"]
    with ElfFile(libs[0]) as ours:
        found = ours.exported(sample)
    assert set(found) == set(exported[::7]) | ({"dgemm_"} & set(exported))


@pytest.mark.slow
def test_torch_static_mkl_clashes_with_another_global_blas(fake_blas):
    pytest.importorskip("torch")
    a, _ = fake_blas
    report = collect_report(_LOAD.format(
        flags="import torch\nsys.setdlopenflags(sys.getdlopenflags() | os.RTLD_GLOBAL)",
        a=str(a), b=str(a), mode="os.RTLD_GLOBAL"), timeout=300)
    (finding,) = findings(report, "SYM001")
    text = "\n".join(finding["evidence"])
    assert "libtorch_cpu.so" in text and str(a) in text and "dgemm_" in text
