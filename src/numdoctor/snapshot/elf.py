"""Just enough ELF to answer two questions fast, without loading or calling anything.

1. Where are a file's read-only data sections? String literals (module names such as
   `numpy._core._multiarray_umath`, NumPy's error-message formats) live there, so a marker
   search reads megabytes instead of the whole file (libtorch_cpu.so: 18 MB of 434 MB).
2. Does a library export a given symbol? Answered through the file's own `.gnu.hash` (or
   SysV `.hash`) table, exactly as the dynamic linker does: one bloom-filter probe and a
   short chain walk per name, instead of decoding every dynamic symbol. pyelftools would
   decode all 74,000 `.dynsym` entries of libtorch_cpu.so in Python to find one; this reads a
   few pages. Results are cached by (path, size, mtime).

3. What does a library call itself (DT_SONAME) and which libraries does it need (DT_NEEDED)?
   That tells an interface library (Debian's `libblas.so.3` in front of OpenBLAS) from the
   implementation behind it, and which BLAS an extension module was linked against.

All read only the pages they need (a read-only mmap; a few preads for question 3).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

_SHT_HASH = 5
_SHT_DYNAMIC = 6
_SHT_DYNSYM = 11
_SHT_GNU_HASH = 0x6FFFFFF6
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE = 1, 2, 10
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_STV_DEFAULT, _STV_PROTECTED = 0, 3
_DT_NULL, _DT_NEEDED, _DT_SONAME = 0, 1, 14


class Linkage(NamedTuple):
    soname: str  # "" when the object sets none
    needed: tuple[str, ...]  # DT_NEEDED names, in order


class NotElf(ValueError):
    """The file is not an ELF object this module can read."""


class _Section(NamedTuple):
    name_offset: int  # into the section-name string table; see ElfFile.section_name
    type: int
    flags: int
    offset: int
    size: int
    link: int
    entsize: int


class ElfFile:
    """A read-only view of one ELF file. Use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as fh:
            try:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:  # empty file
                raise NotElf(f"{path}: empty file") from exc
        try:
            self._parse_header()
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            self.close()
            raise NotElf(f"{path}: malformed ELF header ({exc})") from exc
        except NotElf:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def data(self) -> mmap.mmap:
        return self._map

    def _parse_header(self) -> None:
        m = self._map
        self.is64, self.endian, shoff, shentsize, shnum, shstrndx = _header(m[:64], self.path)
        self.sections: list[_Section] = []
        self._names_offset = 0
        if not shoff or not shnum or shoff + shnum * shentsize > len(m):
            return  # stripped of section headers: callers fall back to the whole file
        self.sections = _sections(m[shoff:shoff + shnum * shentsize], self.is64, self.endian,
                                  shentsize)
        if shstrndx < len(self.sections):
            self._names_offset = self.sections[shstrndx].offset

    def section_name(self, section: _Section) -> str:
        if not self._names_offset:
            return ""
        return self._cstr(self._names_offset + section.name_offset)

    def _cstr(self, offset: int) -> str:
        end = self._map.find(b"\0", offset)
        return self._map[offset:end if end >= 0 else len(self._map)].decode("utf-8", "replace")

    # -- question 1: where the string literals are --------------------------------------
    def rodata_ranges(self) -> list[tuple[int, int]]:
        """File ranges of read-only data; the whole file when there are no section headers."""
        ranges = [
            (s.offset, s.offset + s.size)
            for s in self.sections
            if s.type != 8 and s.flags & _SHF_ALLOC and not s.flags & _SHF_EXECINSTR  # 8: NOBITS
            and self.section_name(s).startswith(".rodata")
        ]
        return ranges or [(0, len(self._map))]

    def find_in(self, ranges: Iterable[tuple[int, int]], needle: bytes) -> bool:
        return any(self._map.find(needle, start, end) >= 0 for start, end in ranges)

    def find_all_in(self, ranges: Iterable[tuple[int, int]], needle: bytes) -> list[int]:
        """Offsets of every occurrence of `needle` within `ranges`."""
        hits = []
        for start, end in ranges:
            pos = self._map.find(needle, start, end)
            while pos >= 0:
                hits.append(pos)
                pos = self._map.find(needle, pos + 1, end)
        return hits

    def cstring_at(self, offset: int, limit: int = 4096) -> str:
        """The NUL-terminated string that contains `offset`, read back to its start."""
        m = self._map
        start = m.rfind(b"\0", max(0, offset - limit), offset) + 1
        end = m.find(b"\0", offset, offset + limit)
        return m[start:end if end >= 0 else offset + limit].decode("utf-8", "replace")

    # -- question 2: exported symbols ----------------------------------------------------
    def exported(self, names: Iterable[str]) -> list[str]:
        """Which of `names` this object defines and exports (global/weak functions)."""
        dynsym = next((s for s in self.sections if s.type == _SHT_DYNSYM), None)
        if dynsym is None or dynsym.link >= len(self.sections):
            return []
        dynstr = self.sections[dynsym.link]
        gnu = next((s for s in self.sections if s.type == _SHT_GNU_HASH), None)
        sysv = next((s for s in self.sections if s.type == _SHT_HASH), None)
        found = []
        for name in names:
            encoded = name.encode()
            if gnu is not None:
                index = self._gnu_lookup(gnu, dynsym, dynstr, encoded)
            elif sysv is not None:
                index = self._sysv_lookup(sysv, dynsym, dynstr, encoded)
            else:
                index = self._linear_lookup(dynsym, dynstr, encoded)
            if index is not None and self._is_exported_function(dynsym, index):
                found.append(name)
        return found

    def _symbol(self, dynsym: _Section, index: int) -> tuple[int, int, int, int]:
        """(st_name, st_info, st_other, st_shndx) of one dynamic symbol."""
        e = self.endian
        if self.is64:
            base = dynsym.offset + index * 24
            name, info, other, shndx = struct.unpack_from(e + "IBBH", self._map, base)
        else:
            base = dynsym.offset + index * 16
            name, = struct.unpack_from(e + "I", self._map, base)
            info, other, shndx = struct.unpack_from(e + "BBH", self._map, base + 12)
        return name, info, other, shndx

    def _name_is(self, dynsym: _Section, dynstr: _Section, index: int, name: bytes) -> bool:
        st_name = self._symbol(dynsym, index)[0]
        start = dynstr.offset + st_name
        return self._map[start:start + len(name) + 1] == name + b"\0"

    def _is_exported_function(self, dynsym: _Section, index: int) -> bool:
        _name, info, other, shndx = self._symbol(dynsym, index)
        bind, typ, visibility = info >> 4, info & 0xF, other & 0x3
        return (shndx != 0 and bind in (_STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE)
                and typ in (_STT_FUNC, _STT_GNU_IFUNC)
                and visibility in (_STV_DEFAULT, _STV_PROTECTED))

    def _gnu_lookup(self, table: _Section, dynsym: _Section, dynstr: _Section,
                    name: bytes) -> int | None:
        e, m = self.endian, self._map
        nbuckets, symoffset, bloom_size, bloom_shift = struct.unpack_from(e + "IIII", m,
                                                                          table.offset)
        if not nbuckets or not bloom_size:
            return None
        word_bits = 64 if self.is64 else 32
        word_fmt = e + ("Q" if self.is64 else "I")
        bloom_off = table.offset + 16
        buckets_off = bloom_off + bloom_size * (word_bits // 8)
        chain_off = buckets_off + nbuckets * 4
        h = _gnu_hash(name)
        word, = struct.unpack_from(word_fmt, m, bloom_off + ((h // word_bits) % bloom_size)
                                   * (word_bits // 8))
        mask = (1 << (h % word_bits)) | (1 << ((h >> bloom_shift) % word_bits))
        if word & mask != mask:
            return None
        index, = struct.unpack_from(e + "I", m, buckets_off + (h % nbuckets) * 4)
        if index < symoffset:
            return None
        while True:
            chain_hash, = struct.unpack_from(e + "I", m, chain_off + (index - symoffset) * 4)
            if (chain_hash | 1) == (h | 1) and self._name_is(dynsym, dynstr, index, name):
                return index
            if chain_hash & 1:
                return None
            index += 1

    def _sysv_lookup(self, table: _Section, dynsym: _Section, dynstr: _Section,
                     name: bytes) -> int | None:
        e, m = self.endian, self._map
        nbucket, nchain = struct.unpack_from(e + "II", m, table.offset)
        if not nbucket:
            return None
        index, = struct.unpack_from(e + "I", m, table.offset + 8 + (_sysv_hash(name) % nbucket)
                                    * 4)
        seen = 0
        while index and seen <= nchain:
            if self._name_is(dynsym, dynstr, index, name):
                return index
            index, = struct.unpack_from(e + "I", m, table.offset + 8 + (nbucket + index) * 4)
            seen += 1
        return None

    def _linear_lookup(self, dynsym: _Section, dynstr: _Section, name: bytes) -> int | None:
        count = dynsym.size // (24 if self.is64 else 16)
        for index in range(1, count):
            if self._name_is(dynsym, dynstr, index, name):
                return index
        return None


def _gnu_hash(name: bytes) -> int:
    h = 5381
    for byte in name:
        h = (h * 33 + byte) & 0xFFFFFFFF
    return h


def _sysv_hash(name: bytes) -> int:
    h = 0
    for byte in name:
        h = (h << 4) + byte
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def exported_symbols(path: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of `names` the library at `path` exports; () when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return _exported_cached(path, st.st_size, st.st_mtime_ns, names)


@lru_cache(maxsize=4096)
def _exported_cached(path: str, _size: int, _mtime: int, names: tuple[str, ...]
                     ) -> tuple[str, ...]:
    try:
        with ElfFile(path) as elf:
            return tuple(elf.exported(names))
    except (OSError, NotElf, struct.error, IndexError):
        return ()


def linkage(path: str) -> Linkage:
    """SONAME and DT_NEEDED of the library at `path`; empty when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return Linkage("", ())
    return _linkage_cached(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _linkage_cached(path: str, _size: int, _mtime: int) -> Linkage:
    try:
        return _read_linkage(path)
    except (OSError, NotElf, struct.error, IndexError):
        return Linkage("", ())


def _read_linkage(path: str) -> Linkage:
    """DT_SONAME and the DT_NEEDED names, from the `.dynamic` section.

    Read with a few pread calls rather than through ElfFile's mmap: `check` asks this of
    every library its collector maps, and mapping a file to touch three of its pages cost
    several times more than reading them.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        is64, endian, shoff, shentsize, shnum, _ = _header(os.pread(fd, 64, 0), path)
        if not shoff or not shnum or shoff + shnum * shentsize > size:
            return Linkage("", ())  # no section headers, or a table past the end of the file
        table = os.pread(fd, shnum * shentsize, shoff)
        sections = _sections(table, is64, endian, shentsize)
        dynamic = next((s for s in sections if s.type == _SHT_DYNAMIC), None)
        if dynamic is None or dynamic.link >= len(sections):
            return Linkage("", ())
        strtab = sections[dynamic.link].offset
        fmt = endian + ("qQ" if is64 else "iI")
        entry = struct.calcsize(fmt)
        raw = os.pread(fd, max(0, min(dynamic.size, size - dynamic.offset)), dynamic.offset)
        soname, needed = "", []
        for tag, value in struct.iter_unpack(fmt, raw[:len(raw) - len(raw) % entry]):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                needed.append(_pread_cstr(fd, strtab + value))
            elif tag == _DT_SONAME:
                soname = _pread_cstr(fd, strtab + value)
        return Linkage(soname, tuple(needed))
    finally:
        os.close(fd)


def _pread_cstr(fd: int, offset: int) -> str:
    """The NUL-terminated string at `offset` (to the end of the file if unterminated)."""
    chunks = []
    while True:
        chunk = os.pread(fd, 256, offset)
        end = chunk.find(b"\0")
        if end >= 0 or len(chunk) < 256:
            chunks.append(chunk[:end] if end >= 0 else chunk)
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)
        offset += len(chunk)


def _header(head: bytes, path: str) -> tuple[bool, str, int, int, int, int]:
    """(is64, struct byte order, e_shoff, e_shentsize, e_shnum, e_shstrndx)."""
    if len(head) < 64 or head[:4] != b"\x7fELF":
        raise NotElf(f"{path}: not an ELF file")
    ei_class, ei_data = head[4], head[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise NotElf(f"{path}: unknown ELF class/encoding")
    is64 = ei_class == 2
    e = "<" if ei_data == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(e + "Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 0x3A)
    else:
        shoff, = struct.unpack_from(e + "I", head, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 0x2E)
    return is64, e, shoff, shentsize, shnum, shstrndx


def _sections(table: bytes, is64: bool, endian: str, entsize: int) -> list[_Section]:
    """The section headers in `table` (e_shnum entries of e_shentsize bytes)."""
    fmt = endian + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
    if entsize == struct.calcsize(fmt):  # one C-level pass: `check` reads many libraries
        rows = struct.iter_unpack(fmt, table)
    elif entsize > struct.calcsize(fmt):  # padded entries
        rows = (struct.unpack_from(fmt, table, i) for i in range(0, len(table), entsize))
    else:
        return []  # entries too short to be section headers: none can be trusted
    return [_Section(name, typ, flags, off, size, link, esize)
            for name, typ, flags, _addr, off, size, link, _info, _align, esize in rows]
