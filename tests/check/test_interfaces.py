"""Interface libraries and symbolic-link aliases are one implementation with one pool.

Real ELF files built with gcc reproduce each layout — Debian's alternatives (libblas.so.3 and
liblapack.so.3 needing libopenblas.so.0), FlexiBLAS (a core that dlopens a backend that
needs the implementation), reference LAPACK over a BLAS, conda's libblas.so.3 symbolic link —
and are loaded into a real process, whose snapshot must count one implementation. The rules
are then driven with hand-written snapshots of the same layouts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from checkutil import codes, inprocess_check

from numdoctor.rules import apply_rules
from numdoctor.snapshot.implementations import linked_libraries, resolve_interfaces
from numdoctor.snapshot.model import (
    FrameworkInfo,
    LoadedLibrary,
    Snapshot,
    SymbolClash,
    SymbolExporter,
    SystemInfo,
)

IMPLEMENTATION = """
const char *openblas_get_config(void) { return "OpenBLAS 0.3.99 fake"; }
int openblas_get_num_threads(void) { return 1; }
void openblas_set_num_threads(int n) { (void)n; }
void dgemm_(void) {}
void dgesdd_(void) {}
"""
INTERFACE = """
extern void dgemm_(void);
void cblas_dgemm(void) { dgemm_(); }
"""


def _gcc(out: Path, name: str, source: str, *flags: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    (out / f"{name}.c").write_text(textwrap.dedent(source))
    target = out / name
    subprocess.run([gcc, "-shared", "-fPIC", str(out / f"{name}.c"), "-o", str(target),
                    *flags], check=True, capture_output=True)
    return target


@pytest.fixture(scope="module")
def debian_layout(tmp_path_factory) -> dict[str, Path]:
    """openblas-pthread/{libopenblasp-r0.3.99.so (SONAME libopenblas.so.0), libblas.so.3,
    liblapack.so.3}, a reference liblapack needing libblas.so.3, and an "extension module"
    linked against libblas.so.3 and liblapack.so.3, as apt installs them."""
    root = tmp_path_factory.mktemp("debian")
    lib = root / "openblas-pthread"
    lib.mkdir()
    impl = _gcc(lib, "libopenblasp-r0.3.99.so", IMPLEMENTATION, "-Wl,-soname,libopenblas.so.0")
    os.symlink(impl.name, lib / "libopenblas.so.0")
    rpath = f"-Wl,-rpath,{lib}"
    blas = _gcc(lib, "libblas.so.3", INTERFACE, "-Wl,-soname,libblas.so.3", f"-L{lib}",
                "-l:libopenblas.so.0", rpath)
    lapack = _gcc(lib, "liblapack.so.3", "extern void dgesdd_(void);\n"
                  "void lapacke_dgesdd(void) { dgesdd_(); }\n", "-Wl,-soname,liblapack.so.3",
                  f"-L{lib}", "-l:libopenblas.so.0", rpath)
    package = root / "site" / "fakenumpy"
    package.mkdir(parents=True)
    extension = _gcc(package, "_umath.so", "extern void cblas_dgemm(void);\n"
                     "void f(void) { cblas_dgemm(); }\n", "-Wl,--no-as-needed", f"-L{lib}",
                     "-l:libblas.so.3", "-l:liblapack.so.3", rpath)
    alternatives = root / "alternatives"
    alternatives.mkdir()
    os.symlink(blas, alternatives / "libblas.so.3-x86_64-linux-gnu")
    os.symlink(lapack, alternatives / "liblapack.so.3-x86_64-linux-gnu")
    os.symlink(lib / "libblas.so.3", alternatives / "libblas.so-x86_64-linux-gnu")
    return {"impl": impl, "blas": blas, "lapack": lapack, "extension": extension,
            "package": package, "alternatives": alternatives}


def _blas(path: Path, vendor: str = "reference") -> LoadedLibrary:
    return LoadedLibrary(path=str(path), family="blas", vendor=vendor)


def test_debian_alternatives_are_one_implementation(debian_layout):
    libs = [_blas(debian_layout["lapack"]), _blas(debian_layout["impl"], "openblas"),
            _blas(debian_layout["blas"])]
    resolve_interfaces(libs, alternatives_dir=str(debian_layout["alternatives"]))
    lapack, impl, blas = libs
    assert impl.implementation == "" and impl.soname == "libopenblas.so.0"
    assert blas.implementation == lapack.implementation == impl.path
    assert blas.vendor == lapack.vendor == "openblas"
    # Only the libraries' own names are looked up, and the run-time link is the choice.
    assert blas.alternatives == ["libblas.so.3-x86_64-linux-gnu"]
    assert lapack.alternatives == ["liblapack.so.3-x86_64-linux-gnu"]
    mapped = [str(debian_layout["extension"]), *(lib.path for lib in libs)]
    served = linked_libraries(str(debian_layout["package"]), mapped, libs, "blas")
    assert served == [impl.path]


def test_reference_lapack_over_a_blas_is_one_stack(tmp_path):
    blas = _gcc(tmp_path, "libblas.so.3", "void dgemm_(void) {}\n", "-Wl,-soname,libblas.so.3")
    lapack = _gcc(tmp_path, "liblapack.so.3", "extern void dgemm_(void);\n"
                  "void dgesdd_(void) { dgemm_(); }\n", "-Wl,-soname,liblapack.so.3",
                  f"-L{tmp_path}", "-l:libblas.so.3")
    libs = [_blas(lapack), _blas(blas)]
    resolve_interfaces(libs, alternatives_dir=str(tmp_path / "none"))
    assert libs[0].implementation == str(blas) and libs[1].implementation == ""
    assert libs[0].vendor == libs[1].vendor == "reference"


def test_debian_atlas_alternative_is_one_implementation(tmp_path):
    """libatlas3-base: atlas/libblas.so.3 and atlas/liblapack.so.3 over libatlas.so.3."""
    from numdoctor.snapshot.libraries import classify

    atlas = _gcc(tmp_path, "libatlas.so.3.10.3", "void ATL_buildinfo(void) {}\n"
                 "void ATL_dgemm(void) {}\n", "-Wl,-soname,libatlas.so.3")
    os.symlink(atlas.name, tmp_path / "libatlas.so.3")
    (tmp_path / "atlas").mkdir()
    blas = _gcc(tmp_path / "atlas", "libblas.so.3", "extern void ATL_dgemm(void);\n"
                "void dgemm_(void) { ATL_dgemm(); }\n", "-Wl,-soname,libblas.so.3",
                f"-L{tmp_path}", "-l:libatlas.so.3")
    assert classify(str(atlas)) == ("blas", "atlas")
    libs = [_blas(blas), _blas(atlas, "atlas")]
    resolve_interfaces(libs, alternatives_dir=str(tmp_path / "none"))
    assert libs[0].implementation == str(atlas) and libs[0].vendor == "atlas"


def test_flexiblas_core_and_backend_are_one_implementation(tmp_path):
    impl = _gcc(tmp_path, "libopenblaso-r0.3.99.so", IMPLEMENTATION,
                "-Wl,-soname,libopenblaso.so.0")
    os.symlink(impl.name, tmp_path / "libopenblaso.so.0")
    core = _gcc(tmp_path, "libflexiblas.so.3", "void dgemm_(void) {}\n",
                "-Wl,-soname,libflexiblas.so.3")
    (tmp_path / "flexiblas").mkdir()
    backend = _gcc(tmp_path / "flexiblas", "libflexiblas_openblas-openmp.so",
                   "extern void dgemm_(void);\nvoid flexiblas_backend(void) { dgemm_(); }\n",
                   f"-L{tmp_path}", "-l:libopenblaso.so.0")
    hook = _gcc(tmp_path / "flexiblas", "libflexiblas_hook_profile.so", "void h(void) {}\n")
    libs = [_blas(core, "flexiblas"), _blas(backend, "flexiblas"), _blas(hook, "flexiblas"),
            _blas(impl, "openblas")]
    resolve_interfaces(libs, alternatives_dir=str(tmp_path / "none"))
    assert libs[0].implementation == libs[1].implementation == str(impl)
    assert libs[0].vendor == "openblas"


def test_loaded_for_real_one_implementation_and_no_blas001(debian_layout):
    """dlopen the interfaces and a symbolic link to the implementation (conda's libblas.so.3
    layout) in a real process: one implementation in its snapshot, no BLAS001."""
    conda_link = debian_layout["impl"].parent / "conda-libblas.so.3"
    if not conda_link.exists():
        os.symlink(debian_layout["impl"].name, conda_link)
    report = inprocess_check(f"""
        import ctypes
        for path in ({str(debian_layout['extension'])!r}, {str(conda_link)!r}):
            ctypes.CDLL(path)
    """)
    libs = [lib for lib in report["snapshot"]["libraries"] if lib["family"] == "blas"]
    implementations = [lib for lib in libs if not lib["implementation"]]
    assert [lib["path"] for lib in implementations] == [str(debian_layout["impl"])], libs
    assert {os.path.basename(lib["path"]) for lib in libs} == {
        "libopenblasp-r0.3.99.so", "libblas.so.3", "liblapack.so.3"}
    assert "BLAS001" not in codes(report)


# -- the rules, on hand-written snapshots ---------------------------------------------------

def _debian(*extra: LoadedLibrary, rtld_global: bool = False) -> Snapshot:
    impl = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"
    owner = {"distribution": "deb:libopenblas0-pthread", "distribution_version": "0.3.21+ds-4"}
    snapshot = Snapshot(
        system=SystemInfo(cpu_count=2, affinity_count=2, effective_cpus=2),
        libraries=[
            LoadedLibrary(path=impl, family="blas", vendor="openblas", num_threads=2,
                          version="0.3.21", **owner),
            LoadedLibrary(path=impl.replace("libopenblasp-r0.3.21.so", "libblas.so.3"),
                          family="blas", vendor="openblas", implementation=impl,
                          alternatives=["libblas.so.3-x86_64-linux-gnu"], **owner),
            LoadedLibrary(path=impl.replace("libopenblasp-r0.3.21.so", "liblapack.so.3"),
                          family="blas", vendor="openblas", implementation=impl, **owner),
            *extra,
        ],
        frameworks=[FrameworkInfo(name="numpy", distribution="deb:python3-numpy",
                                  blas_libraries=[impl])],
    )
    snapshot.process.rtld_global = rtld_global
    return snapshot


def test_rules_count_implementations_not_files():
    found = codes_of(_debian())
    assert "BLAS001" not in found and "THR001" not in found and "THR003" not in found


def test_two_implementations_name_packages_never_paths():
    wheel = LoadedLibrary(path="/home/u/.local/lib/python3.11/site-packages/numpy.libs/"
                               "libscipy_openblas64_-1.so", family="blas", vendor="openblas",
                          distribution="numpy", distribution_version="2.4.6", num_threads=2)
    unowned = LoadedLibrary(path="/opt/custom/lib/libopenblas.so.0", family="blas",
                            vendor="openblas", num_threads=2)
    snapshot = _debian(wheel, unowned)
    snapshot.frameworks.append(FrameworkInfo(name="scipy", blas_libraries=[unowned.path]))
    (blas,) = codes_of(snapshot)["BLAS001"]
    assert blas.title == "3 BLAS implementations are loaded (openblas)"
    assert "libopenblas0-pthread (apt), numpy, scipy" in blas.fix
    assert ".so" not in blas.fix and "/" not in blas.fix.split("install", 1)[1]
    debian_line = next(line for line in blas.evidence if "libopenblasp" in line)
    assert "libopenblas0-pthread 0.3.21+ds-4 (apt)" in debian_line
    assert "also reached through libblas.so.3, liblapack.so.3" in debian_line
    assert "libblas.so.3-x86_64-linux-gnu" in debian_line


def test_symbol_clash_between_an_interface_and_its_implementation_is_not_sym001():
    snapshot = _debian(rtld_global=True)
    paths = [lib.path for lib in snapshot.libraries]
    snapshot.binary.symbol_clashes = [SymbolClash(
        symbols=["dgemm_", "dgesdd_"], libraries=[SymbolExporter(path=p) for p in paths])]
    assert "SYM001" not in codes_of(snapshot)
    other = "/site/numpy.libs/libopenblas64_.so"
    snapshot.libraries.append(LoadedLibrary(path=other, family="blas", vendor="openblas"))
    snapshot.binary.symbol_clashes[0].libraries.append(SymbolExporter(path=other))
    assert "SYM001" in codes_of(snapshot)


def test_openmp_rules_count_runtimes_not_names():
    gomp = LoadedLibrary(path="/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0", family="openmp",
                         vendor="gnu", num_threads=2)
    alias = LoadedLibrary(path="/usr/lib/x86_64-linux-gnu/libgomp-alias.so.1", family="openmp",
                          vendor="gnu", implementation=gomp.path)
    snapshot = Snapshot(system=SystemInfo(effective_cpus=2), libraries=[gomp, alias])
    assert "OMP002" not in codes_of(snapshot)


def codes_of(snapshot: Snapshot) -> dict:
    found: dict = {}
    for finding in apply_rules(Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())))):
        found.setdefault(finding.code, []).append(finding)
    return found
