"""Which CPU extension an illegal instruction needed, and which ones this CPU lacks.

"Illegal instruction" almost always means a binary built for a newer CPU than the one it runs
on (a wheel compiled with `-march=native`, an AVX-512 kernel on an AVX2 machine, AMX on a CPU
or kernel without it). The kernel names the file and offset of the faulting instruction; its
first bytes tell the instruction's encoding family, which is enough to name the extension.
The decoding covers the encodings numerical code uses (SSE4, VEX: AVX/AVX2/FMA/BMI/AMX/VNNI,
EVEX: AVX-512) and the deliberate traps (`ud2`, which is a crash on purpose, not a CPU
mismatch).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# x86-64 micro-architecture levels (the psABI), as /proc/cpuinfo names the flags.
LEVELS: dict[str, tuple[str, ...]] = {
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
# Extensions beyond v4 that numerical libraries dispatch to.
LATER = ("avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16",
         "amx_int8")
_PREFIXES = {0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65}


@dataclass(frozen=True)
class Instruction:
    """A family of instructions a crash may stop at, and the CPU flags it needs."""

    family: str  # a readable name: "AVX-512 (EVEX-encoded)", "ud2 (deliberate trap)"
    needs: tuple[str, ...]  # /proc/cpuinfo flags of which the instruction needs at least one
    deliberate: bool = False  # a trap instruction: the program crashed on purpose


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                return set(value.split())
    except OSError:
        pass
    return set()


def level(flags: set[str]) -> str:
    """The highest x86-64 level whose every flag this CPU has ("x86-64" at least)."""
    reached = "x86-64"
    for name, needed in LEVELS.items():
        if not set(needed) <= flags:
            break
        reached = name
    return reached


def missing_above(flags: set[str]) -> list[str]:
    """Flags of the levels above this CPU's, and later extensions, that it does not have."""
    missing: list[str] = []
    for needed in LEVELS.values():
        missing.extend(f for f in needed if f not in flags and f not in missing)
    missing.extend(f for f in LATER if f not in flags)
    return missing


def decode(code: bytes) -> Instruction | None:
    """Classify the instruction that starts `code` (x86-64 only)."""
    if platform.machine() not in ("x86_64", "AMD64", "i686", "i386") or not code:
        return None
    i = 0
    prefixes = set()
    while i < len(code) and code[i] in _PREFIXES:
        prefixes.add(code[i])
        i += 1
    if i < len(code) and 0x40 <= code[i] <= 0x4F:  # REX
        i += 1
    if i >= len(code):
        return None
    first = code[i]
    if first == 0x62:
        return Instruction("AVX-512 (EVEX-encoded)", ("avx512f",))
    if first in (0xC4, 0xC5):
        return _vex(code[i:])
    if first == 0x0F and i + 1 < len(code):
        second = code[i + 1]
        if second == 0x0B:
            return Instruction("ud2 (a deliberate trap: __builtin_trap, a failed check)", (),
                               deliberate=True)
        if second in (0xB9, 0xFF):
            return Instruction("ud1/ud0 (a deliberate trap)", (), deliberate=True)
        if second == 0xB8 and 0xF3 in prefixes:
            return Instruction("popcnt", ("popcnt",))
        if second == 0x38 and i + 2 < len(code):
            if code[i + 2] in (0xF0, 0xF1) and 0xF2 in prefixes:
                return Instruction("crc32 (SSE4.2)", ("sse4_2",))
            return Instruction("SSSE3/SSE4.1 (0F 38 opcode)", ("ssse3", "sse4_1"))
        if second == 0x3A:
            return Instruction("SSE4.1/SSE4.2 (0F 3A opcode)", ("sse4_1", "sse4_2"))
    return Instruction(f"an instruction starting with {code[i:i + 4].hex(' ')}", ())


def _vex(code: bytes) -> Instruction:
    # VEX: C5 RvvvvLpp opcode (map 0F) | C4 RXBmmmmm WvvvvLpp opcode
    if code[0] == 0xC5:
        mapping = 1
        length = (code[1] >> 2) & 1 if len(code) > 1 else 0
        opcode = code[2] if len(code) > 2 else -1
    else:
        mapping = code[1] & 0x1F if len(code) > 1 else 0
        length = (code[2] >> 2) & 1 if len(code) > 2 else 0
        opcode = code[3] if len(code) > 3 else -1
    if mapping == 2:
        if opcode in (0x49, 0x4B, 0x5C, 0x5E, 0x5F, 0x6C):
            return Instruction("AMX tile instruction", ("amx_tile",))
        if opcode in (0x50, 0x51, 0x52, 0x53):
            return Instruction("AVX-VNNI", ("avx_vnni",))
        if 0x96 <= opcode <= 0xBF:
            return Instruction("FMA3", ("fma",))
        if opcode in (0xF2, 0xF3, 0xF7) and not length:
            return Instruction("BMI1/BMI2", ("bmi1", "bmi2"))
        if opcode in (0xF5, 0xF6):
            return Instruction("BMI2", ("bmi2",))
    if length:
        return Instruction("AVX/AVX2 256-bit (VEX-encoded)", ("avx", "avx2"))
    return Instruction("AVX (VEX-encoded)", ("avx",))


def read_code(path: str, offset: int, size: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except OSError:
        return b""
