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


def test_linkage_matches_pyelftools_on_the_installed_libraries():
    """DT_SONAME and DT_NEEDED (read with a few preads) and the read-only data sections, as
    pyelftools decodes them."""
    elftools = pytest.importorskip("elftools.elf.elffile")
    import numpy

    from numdoctor.snapshot.elf import linkage

    paths = sorted(glob.glob(os.path.join(os.path.dirname(numpy.__file__), "**", "*.so*"),
                             recursive=True))[:20]
    paths += sorted(glob.glob(os.path.dirname(numpy.__file__) + ".libs/*.so*"))
    paths += [p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6")
              if os.path.exists(p)]
    assert len(paths) > 3
    with_needed = 0
    for path in paths:
        with open(path, "rb") as fh:
            dynamic = elftools.ELFFile(fh).get_section_by_name(".dynamic")
            tags = list(dynamic.iter_tags()) if dynamic is not None else []
            soname = next((t.soname for t in tags if t.entry.d_tag == "DT_SONAME"), "")
            needed = tuple(t.needed for t in tags if t.entry.d_tag == "DT_NEEDED")
            rodata = [(s["sh_offset"], s["sh_offset"] + s["sh_size"])
                      for s in elftools.ELFFile(fh).iter_sections()
                      if s.name.startswith(".rodata") and s["sh_type"] != "SHT_NOBITS"
                      and s["sh_flags"] & 0x2 and not s["sh_flags"] & 0x4]
        assert linkage(path) == (soname, needed), path
        with ElfFile(path) as ours:
            assert ours.rodata_ranges() == (rodata or [(0, os.path.getsize(path))]), path
        with_needed += bool(needed)
    assert with_needed > 3
    assert linkage(__file__) == ("", ())  # not ELF: nothing, no error


def test_linkage_of_a_malformed_elf_is_empty_without_reading_past_its_end(tmp_path):
    """Header fields that point past the end of the file (or hold nonsense) never make the
    reader allocate what they claim or raise: the library is reported as linking nothing."""
    import struct

    from numdoctor.snapshot.elf import linkage

    def elf(shoff: int, shentsize: int, shnum: int, body: bytes = b"") -> str:
        head = bytearray(64)
        head[:6] = b"\x7fELF\x02\x01"
        struct.pack_into("<Q", head, 0x28, shoff)
        struct.pack_into("<HHH", head, 0x3A, shentsize, shnum, 0)
        path = tmp_path / f"lib{shoff}-{shentsize}-{shnum}.so"
        path.write_bytes(bytes(head) + body)
        return str(path)

    assert linkage(elf(64, 64, 65535)) == ("", ())  # a table far past the end
    assert linkage(elf(64, 0, 3, bytes(64))) == ("", ())  # zero-sized entries
    assert linkage(elf(64, 16, 2, bytes(32))) == ("", ())  # entries too short
    # A .dynamic section that claims an enormous size and a string table past the end.
    dynamic = struct.pack("<IIQQQQIIQQ", 0, 6, 0, 0, 64 + 128, 1 << 60, 1, 0, 0, 16)
    strtab = struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, 1 << 40, 10, 0, 0, 0, 0)
    entries = struct.pack("<qQqQ", 1, 5, 0, 0)  # DT_NEEDED at an offset past the end
    assert linkage(elf(64, 64, 2, dynamic + strtab + entries)) == ("", ("",))
