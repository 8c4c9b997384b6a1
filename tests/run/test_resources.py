"""Memory over time, the OOM killer, illegal instructions and GPUs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from run_helpers import PYTHON, build_c, codes, numdoctor_run, report, script

from numdoctor.core import cgroup, isa
from numdoctor.rules.run.memory import steady_growth


def _kmsg_readable() -> bool:
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_steadily_growing_memory_is_a_leak_suspect(tmp_path, mark):
    prog = script(tmp_path, """
        import time
        kept = []
        end = time.monotonic() + 14
        while time.monotonic() < end:
            kept.append(bytearray(4 * 2**20))   # 20 MiB/s, never released
            time.sleep(0.2)
        print("done")
    """)
    target = tmp_path / "report.json"
    # With a hang timeout the tree is sampled twice a second (once a second without).
    result = numdoctor_run("--hang-timeout", "60", "--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"done\n", b"")
    data = report(target)
    leak = codes(data)["MEM001"][0]
    assert leak["severity"] == "warning"
    assert re.search(r"[MG]iB/min", leak["title"])
    assert data["outcome"]["resources"]["peak_tree_rss"] > 200 * 2**20


def test_growth_that_levels_off_or_drops_is_not_a_leak():
    mib = 2**20
    ramp = [(t, 100 * mib + t * 20 * mib) for t in range(30)]
    assert steady_growth(ramp) is not None
    plateau = [(t, 100 * mib + min(t, 3) * 50 * mib) for t in range(30)]
    assert steady_growth(plateau) is None
    saw = [(t, 100 * mib + (t % 10) * 30 * mib) for t in range(30)]
    assert steady_growth(saw) is None
    short = [(t / 10, 100 * mib + t * 20 * mib) for t in range(30)]  # 3 seconds
    assert steady_growth(short) is None


@pytest.fixture
def memory_cgroup_dir(tmp_path):
    """A fresh memory cgroup below ours with a 150 MiB limit (needs write access)."""
    ours = cgroup.memory_cgroup(os.getpid())
    if ours is None:
        pytest.skip("no memory cgroup is visible")
    child = ours.path / f"numdoctor-test-{os.getpid()}-{tmp_path.name}"
    try:
        child.mkdir()
        limit = child / ("memory.max" if ours.version == 2 else "memory.limit_in_bytes")
        limit.write_text(str(150 * 2**20))
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here ({exc.strerror})")
    yield child
    for _ in range(50):
        try:
            child.rmdir()
            break
        except OSError:
            import time

            time.sleep(0.1)


@pytest.mark.slow
def test_the_oom_killer_is_named_with_the_peak_memory(memory_cgroup_dir, tmp_path, mark):
    prog = script(tmp_path, """
        import time
        print("allocating", flush=True)
        kept = []
        while True:
            kept.append(bytearray(16 * 2**20))
            time.sleep(0.02)
    """)
    target = tmp_path / "report.json"
    # The whole supervised tree lives in the limited cgroup, as in a container.
    wrapper = (f"echo $$ > {memory_cgroup_dir / 'cgroup.procs'} && exec {sys.executable} -m "
               f"numdoctor run --report {target} -- {PYTHON} {prog}")
    result = subprocess.run(["sh", "-c", wrapper], capture_output=True, timeout=120,
                            env={**os.environ, "NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 128 + signal.SIGKILL
    data = report(target)
    assert data["outcome"]["status"] == "oom"
    oom = codes(data)["OOM001"][0]
    evidence = "\n".join(oom["evidence"])
    assert "oom_kill counter rose" in evidence or "kernel:" in evidence
    assert "peak resident memory" in evidence
    assert b"OOM001" in result.stderr


ILLEGAL = """
#include <stdio.h>
int main(void) {
    puts("about to run it");
    fflush(stdout);
    __asm__ volatile(INSTRUCTION);
    return 0;
}
"""


def _illegal_program(tmp_path_factory, name: str, instruction: str) -> Path:
    source = ILLEGAL.replace("INSTRUCTION", f'"{instruction}"')
    return build_c(tmp_path_factory, name, source)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 instructions")
def test_a_deliberate_trap_is_sigill_but_not_blamed_on_the_cpu(tmp_path_factory, tmp_path, mark):
    program = _illegal_program(tmp_path_factory, "trap", "ud2")
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", str(program),
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 132
    finding = codes(report(target))["SIG005"][0]
    evidence = "\n".join(finding["evidence"])
    assert "this CPU: x86-64" in evidence
    if _kmsg_readable():
        assert "ud2 (a deliberate trap" in evidence
        assert "culprit: trap" in evidence


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 instructions")
def test_an_instruction_the_cpu_lacks_is_named(tmp_path_factory, tmp_path, mark):
    if "amx_tile" in isa.cpu_flags():
        pytest.skip("this CPU has AMX; no instruction it lacks is known to this test")
    # tilerelease (VEX.128.NP.0F38.W0 49 C0), as bytes: no assembler support needed.
    program = _illegal_program(tmp_path_factory, "amx", ".byte 0xc4,0xe2,0x78,0x49,0xc0")
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", str(program),
                           env={"NUMDOCTOR_TEST_MARK": mark})
    assert result.returncode == 132
    evidence = "\n".join(codes(report(target))["SIG005"][0]["evidence"])
    assert "amx_tile" in evidence  # listed among what this CPU lacks
    if _kmsg_readable():
        assert "AMX tile instruction; it needs amx_tile, which this CPU lacks" in evidence


def test_the_instruction_decoder():
    assert isa.decode(bytes.fromhex("0f0b")).deliberate
    assert isa.decode(bytes.fromhex("62f17c48100f")).needs == ("avx512f",)  # vmovups zmm
    assert isa.decode(bytes.fromhex("c4e27849c0")).needs == ("amx_tile",)  # tilerelease
    assert isa.decode(bytes.fromhex("c4e2f9a8c2")).needs == ("fma",)  # vfmadd213pd
    assert isa.decode(bytes.fromhex("c5fd6fc1")).needs == ("avx", "avx2")  # vmovdqa ymm
    assert isa.decode(bytes.fromhex("f30fb8c0")).needs == ("popcnt",)
    assert isa.level({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2",
                      "ssse3"}) == "x86-64-v2"


STUB_NVML = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* The NVML entry points numdoctor calls, with the documented ABI, answering for one busy GPU
   whose memory is held by the pid written in $STUB_NVML_PIDFILE. */
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } proc_t;
int nvmlInit_v2(void) { return 0; }
const char *nvmlErrorString(int status) { return "stub"; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { *h = (void *)0x1; return 0; }
int nvmlDeviceGetName(void *h, char *name, unsigned int n) {
    strncpy(name, "Stub H100", n); return 0; }
int nvmlDeviceGetUtilizationRates(void *h, util_t *u) { u->gpu = 97; u->memory = 40; return 0; }
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    m->total = 80ULL << 30; m->used = 31ULL << 30; m->free = m->total - m->used; return 0; }
int nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *count, proc_t *infos) {
    unsigned int pid = 0;
    FILE *f = fopen(getenv("STUB_NVML_PIDFILE"), "r");
    if (f) { if (fscanf(f, "%u", &pid) != 1) pid = 0; fclose(f); }
    *count = 1; infos[0].pid = pid; infos[0].used = 4ULL << 30;
    return 0;
}
"""


@pytest.mark.slow
def test_gpu_state_at_a_hang_through_nvml(tmp_path_factory, tmp_path, mark):
    """NVML read through ctypes, against a stub library with NVML's documented ABI (this
    machine has no GPU): a busy GPU while the host waits means 'waiting for the GPU'."""
    library = build_c(tmp_path_factory, "libnvidia-ml.so.1", STUB_NVML, "-shared", "-fPIC")
    pidfile = tmp_path / "pid"
    prog = script(tmp_path, f"""
        import os, time
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        print("waiting for the GPU", flush=True)
        time.sleep(3600)
    """)
    target = tmp_path / "report.json"
    result = numdoctor_run("--hang-timeout", "2", "--report", str(target), "--", PYTHON, prog,
                           env={"NUMDOCTOR_TEST_MARK": mark, "STUB_NVML_PIDFILE": str(pidfile),
                                "LD_LIBRARY_PATH": str(library.parent)})
    assert result.returncode == 124
    gpu = codes(report(target))["GPU001"][0]
    assert gpu["title"].startswith("The GPU was busy while the host made no progress")
    evidence = "\n".join(gpu["evidence"])
    assert "GPU 0 (Stub H100): 97% busy, memory 31.00 GiB of 80.00 GiB" in evidence
    assert f"held by pid {pidfile.read_text()} (4.00 GiB)" in evidence


def test_without_nvml_the_report_says_why(tmp_path, mark):
    target = tmp_path / "report.json"
    result = numdoctor_run("--report", str(target), "--", PYTHON, "-c", "import os; os.abort()",
                           env={"NUMDOCTOR_TEST_MARK": mark, "LD_LIBRARY_PATH": ""})
    assert result.returncode == 134
    gpu = report(target)["outcome"]["gpu"]
    if gpu["available"]:
        pytest.skip("this machine has an NVIDIA GPU")
    assert "libnvidia-ml.so.1" in gpu["note"] or "NVML" in gpu["note"]


# -- numdoctor.heartbeat() in this process ------------------------------------------------------

@pytest.fixture
def heartbeat(monkeypatch, tmp_path):
    from numdoctor.supervise import heartbeat as module

    beat = tmp_path / "beat"
    beat.touch()
    monkeypatch.setenv("NUMDOCTOR_HEARTBEAT", str(beat))
    monkeypatch.setenv("NUMDOCTOR_HANG_TIMEOUT", "10")
    monkeypatch.setattr(module, "_configured", False)
    monkeypatch.setattr(module, "_last", 0.0)
    monkeypatch.setattr(module, "_hooks", [])
    return module, beat


def test_heartbeat_touches_the_supervisors_file_at_a_limited_rate(heartbeat):
    module, beat = heartbeat
    os.utime(beat, (0, 0))
    module.heartbeat()
    assert beat.stat().st_mtime > 0
    os.utime(beat, (0, 0))
    for _ in range(100_000):
        module.heartbeat()  # all within the rate limit: no system call
    assert beat.stat().st_mtime == 0
    assert module.supervised()


def test_heartbeat_hooks_are_notified_and_a_failing_one_is_dropped(heartbeat):
    module, _ = heartbeat
    seen = []

    def broken(_now):
        raise RuntimeError("watchdog bug")

    module.add_hook(seen.append)
    module.add_hook(broken)
    module.heartbeat()
    assert len(seen) == 1 and isinstance(seen[0], float)
    assert broken not in module._hooks
    module.remove_hook(seen.append)
    assert module._hooks == []


def test_heartbeat_without_a_supervisor_does_nothing(monkeypatch):
    code = textwrap.dedent("""
        import os, time, numdoctor
        numdoctor.heartbeat()
        from numdoctor.supervise import heartbeat
        print(heartbeat.supervised())
        start = time.perf_counter()
        for _ in range(1_000_000):
            numdoctor.heartbeat()
        print(time.perf_counter() - start < 2.0)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMDOCTOR_")}
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr
