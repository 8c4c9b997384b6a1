"""OpenMP conflicts with real runtimes: libgomp from gcc, libiomp5 from the intel-openmp wheel,
LLVM libomp from Debian. Each scenario runs in its own interpreter."""

from __future__ import annotations

import shutil

import pytest
from checkutil import check_json, codes, inprocess_check, module_installed, run_cli


def test_intel_openmp_next_to_libgomp_is_omp001(omp_library, libiomp5):
    report = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(omp_library)!r})   # brings GNU libgomp
        ctypes.CDLL({str(libiomp5)!r})      # Intel OpenMP from the intel-openmp wheel
    """)
    found = codes(report)
    assert "OMP001" in found
    finding = found["OMP001"][0]
    assert finding["severity"] == "warning"
    evidence = "\n".join(finding["evidence"])
    assert str(libiomp5) in evidence
    assert "intel-openmp" in evidence  # the owning pip package is named
    assert "libgomp" in evidence


def test_intel_and_llvm_openmp_is_an_error_and_not_queried(libiomp5, libomp):
    report = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(libiomp5)!r})
        ctypes.CDLL({str(libomp)!r})
    """)
    finding = codes(report)["OMP001"][0]
    assert finding["severity"] == "error"
    assert "Intel libiomp5" in finding["title"] and "LLVM libomp" in finding["title"]
    # Calling into either runtime could crash the process: numdoctor must not have.
    assert any("not queried" in note for note in report["snapshot"]["notes"])


def test_two_copies_of_libiomp5_from_different_paths(libiomp5, tmp_path):
    copy = tmp_path / "vendored" / "libiomp5.so"
    copy.parent.mkdir()
    shutil.copy(libiomp5, copy)
    report = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(libiomp5)!r})
        ctypes.CDLL({str(copy)!r})
    """)
    finding = codes(report)["OMP002"][0]
    assert finding["severity"] == "error"
    evidence = "\n".join(finding["evidence"])
    assert str(libiomp5) in evidence and str(copy) in evidence
    assert "Error #15" in finding["why"]


def test_duplicate_libiomp5_that_initialises_crashes_only_the_collector(libiomp5, tmp_path):
    """The real OMP Error #15 abort happens in the collector subprocess and becomes IMP003."""
    copy = tmp_path / "copy" / "libiomp5.so"
    copy.parent.mkdir()
    shutil.copy(libiomp5, copy)
    (tmp_path / "two_iomp.py").write_text(
        "import ctypes\n"
        f"for path in ({str(libiomp5)!r}, {str(copy)!r}):\n"
        "    ctypes.CDLL(path).omp_get_max_threads()\n"
    )
    report = check_json("--import", "numpy,two_iomp", env={"PYTHONPATH": str(tmp_path)})
    crash = codes(report)["IMP003"][0]
    evidence = "\n".join(crash["evidence"])
    assert "SIGABRT" in evidence
    assert "OMP: Error #15" in evidence
    # The other module was still collected in a fresh subprocess.
    statuses = {a["module"]: a["status"] for a in report["snapshot"]["imports"]}
    assert statuses == {"numpy": "ok", "two_iomp": "crash"}
    assert any(lib["vendor"] == "openblas" for lib in report["snapshot"]["libraries"])


def test_kmp_duplicate_lib_ok_in_environment_is_omp003():
    report = check_json("--import", "numpy", env={"KMP_DUPLICATE_LIB_OK": "TRUE"})
    finding = codes(report)["OMP003"][0]
    assert "KMP_DUPLICATE_LIB_OK=TRUE" in finding["evidence"]


@pytest.mark.skipif(not module_installed("sklearn"), reason="needs scikit-learn")
def test_the_import_that_sets_kmp_duplicate_lib_ok_is_named():
    # scikit-learn sets it (os.environ.setdefault) in its __init__.
    report = check_json("--import", "numpy,sklearn")  # without it in the environment
    attempts = {a["module"]: a for a in report["snapshot"]["imports"]}
    assert attempts["numpy"]["environment_set"] == []
    assert "KMP_DUPLICATE_LIB_OK" in attempts["sklearn"]["environment_set"]
    finding = codes(report)["OMP003"][0]
    assert "set during `import sklearn`" in "\n".join(finding["evidence"])
    assert "KMP_DUPLICATE_LIB_OK=FALSE" in finding["fix"]
    text = run_cli("check", "--import", "numpy,sklearn").stdout
    assert "set KMP_DUPLICATE_LIB_OK" in text  # the import's row in the table says so


def test_in_process_check_does_not_leave_kmp_duplicate_lib_ok_behind():
    from checkutil import run_python

    result = run_python("""
        import os, numpy, numdoctor
        numdoctor.check()
        import threadpoolctl  # imported by numdoctor: must not have changed the environment
        print(repr(os.environ.get("KMP_DUPLICATE_LIB_OK")))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_started_libgomp_pool_with_fork_start_method_is_fork001(omp_library):
    report = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(omp_library)!r}).run_parallel()
    """)
    finding = codes(report)["FORK001"][0]
    assert "fork (platform default)" in finding["evidence"][0]
    libs = [lib for lib in report["snapshot"]["libraries"] if lib["vendor"] == "gnu"]
    assert libs and libs[0]["active_threads"] >= 1


def test_spawn_start_method_or_idle_pool_is_not_fork001(omp_library):
    spawn = inprocess_check(f"""
        import ctypes, multiprocessing
        multiprocessing.set_start_method("spawn")
        ctypes.CDLL({str(omp_library)!r}).run_parallel()
    """)
    assert "FORK001" not in codes(spawn)
    assert spawn["snapshot"]["process"]["start_method"] == "spawn"
    idle = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(omp_library)!r})  # loaded, but no parallel region has run
    """)
    assert "FORK001" not in codes(idle)


def test_mkl_threading_layer_env_against_libgomp_is_mkl001(omp_library):
    report = inprocess_check(f"""
        import ctypes
        ctypes.CDLL({str(omp_library)!r})
    """, env={"MKL_THREADING_LAYER": "INTEL"})
    finding = codes(report)["MKL001"][0]
    assert finding["severity"] == "warning"
    assert "MKL_THREADING_LAYER=INTEL" in finding["evidence"]


def test_dynamic_mkl_with_intel_layer_next_to_libgomp_is_mkl001_error(omp_library, libmkl_rt):
    # MKL first (as when numpy-with-MKL is imported first): it picks its Intel layer and
    # libiomp5; libgomp arrives afterwards (as when torch is imported next).
    report = inprocess_check(f"""
        import ctypes
        mkl = ctypes.CDLL({str(libmkl_rt)!r})
        mkl.MKL_Get_Max_Threads()   # makes MKL load its threading layer
        ctypes.CDLL({str(omp_library)!r})
    """, env={"MKL_THREADING_LAYER": "INTEL"})
    finding = codes(report)["MKL001"][0]
    assert finding["severity"] == "error"
    evidence = "\n".join(finding["evidence"])
    assert "Intel MKL" in evidence and "mkl" in evidence


@pytest.mark.slow
@pytest.mark.skipif(not module_installed("torch") or not module_installed("sklearn"),
                    reason="needs torch and scikit-learn")
def test_stock_stack_has_two_libgomp_and_two_openblas():
    """numpy + scipy + scikit-learn + torch (CPU) as pip installs them."""
    report = check_json("--import", "numpy,scipy,sklearn,torch")
    found = codes(report)
    omp = found["OMP002"][0]
    owners = {lib["distribution"] for lib in report["snapshot"]["libraries"]
              if lib["vendor"] == "gnu"}
    assert owners == {"torch", "scikit-learn"}
    assert "2 copies of GNU libgomp" in omp["title"]
    blas = found["BLAS001"][0]
    evidence = "\n".join(blas["evidence"])
    assert "[numpy " in evidence and "[scipy " in evidence
    assert "statically into torch" in evidence
    torch_fw = next(f for f in report["snapshot"]["frameworks"] if f["name"] == "torch")
    assert torch_fw["details"]["blas_info"] == "mkl"


@pytest.mark.slow
@pytest.mark.skipif(not module_installed("torch"), reason="needs torch")
def test_torch_matmul_starts_the_pool_that_fork001_warns_about():
    report = inprocess_check("""
        import torch
        a = torch.randn(256, 256)
        (a @ a).sum()
    """)
    finding = codes(report)["FORK001"][0]
    assert "torch" in "\n".join(finding["evidence"])


def test_clean_numpy_environment_has_no_error():
    result = run_cli("check", "--import", "numpy", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    report = json.loads(result.stdout)
    assert report["summary"]["error"] == 0
