"""The knowledge base of stderr messages: real failures where they can be produced here, the
parser on the exact texts the libraries print otherwise."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import pytest
from run_helpers import PYTHON, build_c, codes, numdoctor_run, report, script

from numdoctor.rules.messages import Context, MessageScanner, findings


@pytest.fixture(scope="session")
def libiomp5() -> Path:
    try:
        files = importlib.metadata.files("intel-openmp") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the intel-openmp wheel is not installed")
    for file in files:
        if file.name == "libiomp5.so":
            return Path(file.locate()).resolve()
    pytest.skip("intel-openmp ships no libiomp5.so")


def test_real_omp_error_15_is_omp002_and_the_abort_points_to_it(libiomp5, tmp_path, mark):
    copy = tmp_path / "vendored" / "libiomp5.so"
    copy.parent.mkdir()
    shutil.copy(libiomp5, copy)
    prog = script(tmp_path, f"""
        import ctypes
        for path in ({str(libiomp5)!r}, {str(copy)!r}):
            ctypes.CDLL(path).omp_get_max_threads()
    """)
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 134
    assert b"OMP: Error #15" in result.stderr  # the program's own message, passed through
    found = codes(report(target))
    omp = found["OMP002"][0]
    assert omp["severity"] == "error"
    assert any("OMP: Error #15" in e for e in omp["evidence"])
    abort = found["SIG002"][0]
    assert any("see OMP002" in e for e in abort["evidence"])


def test_real_double_free_is_glibc_heap_corruption(tmp_path, mark):
    prog = script(tmp_path, """
        import ctypes
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        block = libc.malloc(64)
        libc.free(block)
        libc.free(block)
    """)
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 134
    found = codes(report(target))
    assert "double free" in found["MSG002"][0]["title"]
    assert "SIG002" in found


def test_real_undefined_symbol_is_msg004(tmp_path_factory, tmp_path, mark):
    library = build_c(tmp_path_factory, "needs_symbol.so", """
        extern int numdoctor_missing_symbol(void);
        int call(void) { return numdoctor_missing_symbol(); }
    """, "-shared", "-fPIC")
    prog = script(tmp_path, f"import ctypes\nctypes.CDLL({str(library)!r})\n")
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 1
    finding = codes(report(target))["MSG004"][0]
    assert "numdoctor_missing_symbol" in finding["title"]
    assert b"MSG004" in result.stderr  # a plain exit, but numdoctor has something to add


# -- the parser on the exact texts ------------------------------------------------------------

MESSAGES = {
    "OMP002": "OMP: Error #15: Initializing libiomp5.so, but found libiomp5.so already "
              "initialized.",
    "MKL001": "Error: mkl-service + Intel(R) MKL: MKL_THREADING_LAYER=INTEL is incompatible "
              "with libgomp.so.1 library.",
    "THR001": "OpenBLAS blas_thread_init: pthread_create failed for thread 13 of 64: Resource "
              "temporarily unavailable",
    "GPU002": "RuntimeError: CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling "
              "`cublasCreate(handle)`",
    "GPU003": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.",
    "GPU004": "RuntimeError: CUDA error: device-side assert triggered",
    "GPU005": "RuntimeError: CUDA error: no kernel image is available for execution on the "
              "device",
    "MSG001": "terminate called after throwing an instance of 'c10::Error'\n"
              "  what():  Expected all tensors to be on the same device",
    "MSG002": "munmap_chunk(): invalid pointer",
    "MSG003": "RuntimeError: NumPy was built with baseline optimizations: \n(SSE SSE2 AVX2) "
              "but your machine doesn't support:\n(AVX2).",
    "MSG005": "ImportError: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.30' not "
              "found (required by /env/lib/python3.11/site-packages/scipy/_lib/_x.so)",
    "MSG006": "concurrent.futures.process.BrokenProcessPool: A process in the process pool "
              "was terminated abruptly while the future was running or pending.",
    "MSG007": "OpenBLAS Warning : Detect OpenMP Loop and this application may hang. Please "
              "rebuild the library with USE_OPENMP=1 option.",
    "ABI001": "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.0 as it "
              "may crash. To support both 1.x and 2.x\nversions of NumPy, modules must be "
              "compiled with NumPy 2.0.",
    "ABI001 ": "RuntimeError: module compiled against ABI version 0x1000009 but this version "
               "of numpy is 0x2000000",
    "ABI002": "RuntimeError: module was compiled against NumPy C-API version 0x12 (NumPy "
              "1.26) but the running NumPy has C-API version 0x10.",
    "GPU002 ": "cuSolverDN call failed with status CUSOLVER_STATUS_EXECUTION_FAILED",
}


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_each_message_becomes_its_finding(code):
    scanner = MessageScanner()
    text = ("some unrelated output\n" * 50 + MESSAGES[code] + "\nmore output\n").encode()
    # Split at awkward places, as pipe reads do.
    for start in range(0, len(text), 37):
        scanner.feed(text[start:start + 37])
    scanner.finish()
    produced = [f.code for f in findings(scanner.hits, Context())]
    assert code.strip() in produced


def test_the_what_text_of_a_cpp_exception_is_kept_as_evidence():
    scanner = MessageScanner()
    scanner.feed(MESSAGES["MSG001"].encode() + b"\nException raised from foo at bar.cpp:12\n")
    scanner.finish()
    (finding,) = findings(scanner.hits, Context())
    assert "c10::Error" in finding.title
    assert any("Expected all tensors" in e for e in finding.evidence)


def test_repeated_messages_are_counted_not_repeated():
    scanner = MessageScanner()
    for _ in range(1000):
        scanner.feed(b"OMP: Error #15: Initializing libiomp5.so, but found libiomp5.so already "
                     b"initialized.\n")
    scanner.finish()
    (finding,) = findings(scanner.hits, Context())
    assert "seen 1000 times" in finding.evidence[0]


def test_plain_output_produces_nothing():
    scanner = MessageScanner()
    scanner.feed(b"epoch 1 loss 0.5\n" * 10000)
    scanner.finish()
    assert findings(scanner.hits, Context()) == []
