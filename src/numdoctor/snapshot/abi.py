"""Which compiled files use NumPy's C-API, built with which headers, for which NumPy.

Static evidence, read from the files' read-only data (see `elf.py`):

- NumPy 2 headers: `import_array()` first tries `numpy._core._multiarray_umath` and falls back
  to `numpy.core._multiarray_umath`, so both strings are present.
- NumPy 1 headers: only `numpy.core._multiarray_umath` (1.16-1.26) or `numpy.core.multiarray`
  (older). pybind11 before 2.12 imports `numpy.core.multiarray` by name; 2.12 and later
  builds the name from `numpy._core` or `numpy.core` at run time.
- The C-API version a module needs: headers from NumPy 1.25 on embed it in the message
  "module was compiled against NumPy C-API version 0x%x (NumPy X.Y)".

Runtime confirmation imports a module in a fresh interpreter and looks for NumPy's own
messages, which name the failure precisely.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from importlib.machinery import EXTENSION_SUFFIXES
from typing import NamedTuple

from numdoctor.snapshot.elf import ElfFile, NotElf
from numdoctor.snapshot.model import ExtensionModule, NumpyBuild

# NPY_<major>_<minor>_API_VERSION from numpy/_core/include/numpy/numpyconfig.h. Releases
# that did not change the C-API share their predecessor's number.
API_VERSIONS = {
    "1.7": 0x7, "1.8": 0x8, "1.9": 0x9, "1.10": 0xA, "1.11": 0xA, "1.12": 0xA, "1.13": 0xB,
    "1.14": 0xC, "1.15": 0xC, "1.16": 0xD, "1.17": 0xD, "1.18": 0xD, "1.19": 0xD, "1.20": 0xE,
    "1.21": 0xE, "1.22": 0xF, "1.23": 0x10, "1.24": 0x10, "1.25": 0x11, "1.26": 0x11,
    "2.0": 0x12, "2.1": 0x13, "2.2": 0x13, "2.3": 0x14, "2.4": 0x15,
}

_NP2 = b"numpy._core._multiarray_umath"
_NP1 = b"numpy.core._multiarray_umath"
_NP1_OLD = b"numpy.core.multiarray"
_CORE2 = b"numpy._core"
_ARRAY_API = b"_ARRAY_API"
_PYBIND11 = b"pybind11"
_TARGET = re.compile(rb"compiled against NumPy C-API version 0x%x \(NumPy ([0-9]+\.[0-9]+)\)")


class Markers(NamedTuple):
    """What the bytes of one compiled file say about its NumPy build."""

    headers: str  # "1.x", "2.x" or "" (no NumPy C-API use)
    binding: str  # "c-api" (numpy's import_array), "pybind11", "unknown"
    target_api: str
    found: tuple[str, ...]


def read_markers(path: str) -> Markers | None:
    """Markers of one compiled file; None when it is not ELF or does not mention numpy.

    Remembered in this process and on disk (numdoctor.snapshot.cache) by the file's size,
    mtime and inode: reading torch's libraries costs 30 ms, and they change only when
    reinstalled. `save_markers()` writes what was learnt.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _read_markers_cached(path, st.st_size, st.st_mtime_ns, st.st_ino)


@lru_cache(maxsize=8192)
def _read_markers_cached(path: str, size: int, mtime: int, inode: int) -> Markers | None:
    stamp = (size, mtime, inode)
    found, markers = _STORE.get(path, stamp)
    if not found:
        markers = _read_file_markers(path)
        _STORE.put(path, stamp, markers)
    return markers


def save_markers() -> None:
    """Write the markers read in this process to the on-disk cache, if any are new."""
    _STORE.save()


class _MarkerStore:
    """The on-disk memory of read_markers(): path -> [size, mtime_ns, inode, markers|None],
    loaded on first use and written back when something new was read."""

    FORMAT = 1

    def __init__(self) -> None:
        self.entries: dict[str, list] | None = None
        self.dirty = False

    def get(self, path: str, stamp: tuple[int, int, int]) -> tuple[bool, Markers | None]:
        entry = self._entries().get(path)
        if isinstance(entry, list) and len(entry) == 4 and tuple(entry[:3]) == stamp:
            try:
                if entry[3] is None:
                    return True, None
                headers, binding, target_api, found = entry[3]
                return True, Markers(headers, binding, target_api, tuple(found))
            except (TypeError, ValueError):
                pass  # written by another numdoctor version: read the file again
        return False, None

    def put(self, path: str, stamp: tuple[int, int, int], markers: Markers | None) -> None:
        value = None if markers is None else [*markers[:3], list(markers.found)]
        self._entries()[path] = [*stamp, value]
        self.dirty = True

    def save(self) -> None:
        file = self._file()
        if not self.dirty or file is None:
            return
        from numdoctor.snapshot import cache

        # Files that are gone are dropped, so the cache follows the environment.
        entries = {p: e for p, e in self._entries().items() if os.path.exists(p)}
        cache.store(file, {"format": self.FORMAT, "entries": entries})
        self.dirty = False

    def _file(self) -> str | None:
        from numdoctor.snapshot.cache import cache_dir

        root = cache_dir()
        return None if root is None else os.path.join(root, f"abi-markers-{self.FORMAT}.json")

    def _entries(self) -> dict[str, list]:
        if self.entries is None:
            from numdoctor.snapshot import cache

            file = self._file()
            data = cache.load(file) if file is not None else None
            ok = isinstance(data, dict) and data.get("format") == self.FORMAT \
                and isinstance(data.get("entries"), dict)
            self.entries = data["entries"] if ok and isinstance(data, dict) else {}
        return self.entries


_STORE = _MarkerStore()


def _read_file_markers(path: str) -> Markers | None:
    try:
        with ElfFile(path) as elf:
            ranges = elf.rodata_ranges()
            # One pass over the data for "numpy"; the module names are checked where it
            # occurs. Further passes only for what that leaves open.
            hits = elf.find_all_in(ranges, b"numpy")
            if not hits:
                return None
            names = (_NP2, _NP1, _NP1_OLD, _CORE2)
            seen = {bytes(elf.data[h:h + 32]) for h in hits}
            found = [n.decode() for n in names if any(s.startswith(n) for s in seen)]
            c_api = _NP2.decode() in found or _NP1.decode() in found
            if c_api or elf.find_in(ranges, _ARRAY_API):
                found.append(_ARRAY_API.decode())
            pybind11 = not c_api and elf.find_in(ranges, _PYBIND11)
            target = ""
            for offset in elf.find_all_in(ranges, b"(NumPy ") if c_api else ():
                match = _TARGET.search(elf.cstring_at(offset).encode())
                if match:
                    target = match.group(1).decode()
                    break
    except (OSError, NotElf, ValueError):
        return None
    uses_api = "_ARRAY_API" in found or c_api
    # numpy's import_array() names _multiarray_umath; pybind11 looks the table up itself.
    binding = "c-api" if c_api else ("pybind11" if pybind11 else "unknown")
    if not uses_api:
        return Markers("", binding, target, tuple(found))
    if _NP2.decode() in found or (binding == "pybind11" and _CORE2.decode() in found):
        headers = "2.x"
    elif _NP1.decode() in found or _NP1_OLD.decode() in found:
        headers = "1.x"
    else:
        headers = ""  # uses the C-API but builds the module name at run time
    if target:
        found.append(f"(NumPy {target})")
    return Markers(headers, binding, target, tuple(found))


def module_name(path: str, sys_path: Iterable[str]) -> str:
    """The import name of an extension file, or "" when it is not importable as a module."""
    base = os.path.basename(path)
    suffix = next((s for s in sorted(EXTENSION_SUFFIXES, key=len, reverse=True)
                   if base.endswith(s)), None)
    if suffix is None:
        return ""
    for entry in sorted((e for e in sys_path if e), key=len, reverse=True):
        if path.startswith(entry.rstrip(os.sep) + os.sep):
            relative = path[len(entry.rstrip(os.sep)) + 1: -len(suffix)]
            parts = relative.split(os.sep)
            if all(p.isidentifier() for p in parts):
                return ".".join(parts)
            return ""
    return ""


def top_package(path: str, sys_path: Iterable[str]) -> str:
    """The top-level package directory a file lives in, as an import name ("" if none)."""
    for entry in sorted((e for e in sys_path if e), key=len, reverse=True):
        if path.startswith(entry.rstrip(os.sep) + os.sep):
            first = path[len(entry.rstrip(os.sep)) + 1:].split(os.sep, 1)[0]
            return first if first.isidentifier() else ""
    return ""


def describe_extension(path: str, markers: Markers, sys_path: list[str]) -> ExtensionModule:
    ext = ExtensionModule(path=path, numpy_headers=markers.headers, binding=markers.binding,
                          target_api=markers.target_api, markers=list(markers.found))
    ext.target_api_version = API_VERSIONS.get(markers.target_api)
    ext.module = module_name(path, sys_path)
    ext.import_name = ext.module or top_package(path, sys_path)
    return ext


# -- the NumPy that runs (or would) ----------------------------------------------------------
def numpy_build(location: dict | bool | None = True) -> NumpyBuild | None:
    """The loaded NumPy, or the one an import would pick; found without importing it.

    `location` is what the inspected process said (`live_facts()["numpy"]`: version, path,
    loaded; None when it has no NumPy); by default this process is asked.
    """
    if location is True:
        from numdoctor.snapshot.live import _numpy_location

        location = _numpy_location()
    if not location:
        return None
    build = NumpyBuild(version=location.get("version", ""), path=location["path"],
                       loaded=bool(location.get("loaded")))
    if not build.loaded:
        from numdoctor.snapshot.ownership import owning_distribution

        owner = owning_distribution(os.path.join(build.path, "__init__.py"))
        build.version = owner[1] if owner else version_file(build.path)
    _read_numpyconfig(build)
    if build.api_version is None:
        build.api_version = API_VERSIONS.get(".".join(build.version.split(".")[:2]))
    return build


def version_file(package_dir: str) -> str:
    try:
        with open(os.path.join(package_dir, "version.py"), encoding="utf-8") as fh:
            text = fh.read(4096)
    except OSError:
        return ""
    match = re.search(r"^(?:__version__|version)\s*(?::\s*str)?\s*=\s*['\"]([^'\"]+)['\"]",
                      text, re.M)
    return match.group(1) if match else ""


def _read_numpyconfig(build: NumpyBuild) -> None:
    # The installed headers state the running C-API exactly (NumPy exposes no Python call
    # for the feature version).
    for sub in ("_core", "core"):
        path = os.path.join(build.path, sub, "include", "numpy", "_numpyconfig.h")
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        for name, attr in (("NPY_API_VERSION", "api_version"),
                           ("NPY_ABI_VERSION", "abi_version")):
            match = re.search(rf"#define\s+{name}\s+(0x[0-9a-fA-F]+)", text)
            if match:
                setattr(build, attr, int(match.group(1), 16))
        return


# -- runtime confirmation -------------------------------------------------------------------
# NumPy's own words for each failure, most specific first.
_MESSAGES = (
    ("numpy1-on-numpy2", re.compile(r"A module that was compiled using NumPy 1\.x cannot be run "
                                    r"in\s+NumPy \S+ as it may crash\.")),
    ("api-too-new", re.compile(r"module was compiled against NumPy C-API version 0x[0-9a-f]+ "
                               r"\(NumPy [0-9.]+\) but the running NumPy has C-API version "
                               r"0x[0-9a-f]+")),
    ("api-too-new", re.compile(r"module compiled against API version 0x[0-9a-f]+ but this "
                               r"version of numpy is 0x[0-9a-f]+")),
    ("abi-mismatch", re.compile(r"module compiled against ABI version 0x[0-9a-f]+ but this "
                                r"version of numpy is 0x[0-9a-f]+")),
    ("numpy2-on-numpy1", re.compile(r"module compiled against NumPy 2\.0 but running on "
                                    r"NumPy 1\.x")),
    ("dtype-size", re.compile(r"numpy\.dtype size changed, may indicate binary "
                              r"incompatibility[^\n]*")),
    ("numpy1-on-numpy2", re.compile(r"_ARRAY_API not found")),
    ("numpy1-on-numpy2", re.compile(r"numpy\.core\.multiarray failed to import")),
)

_IMPORT = ("import importlib, sys\n"
           "importlib.import_module(sys.argv[1])\n")


_EXCEPTION_LINE = re.compile(r"^(\w+(?:Error|Exception|Warning)): (.+)$", re.M)


def match_numpy_message(text: str) -> tuple[str, str] | None:
    """(kind, NumPy's message) for the first known message in `text`, else None.

    The exception that ended the import is appended when it adds something, e.g.
    "A module that was compiled using NumPy 1.x cannot be run in NumPy 2.4.6 as it may
    crash. (AttributeError: _ARRAY_API not found)".
    """
    for kind, pattern in _MESSAGES:
        match = pattern.search(text)
        if not match:
            continue
        start = text.rfind("\n", 0, match.start()) + 1
        message = " ".join(text[start:match.end()].split())
        exceptions = _EXCEPTION_LINE.findall(text)
        if exceptions:
            last = f"{exceptions[-1][0]}: {exceptions[-1][1].strip()}"
            if exceptions[-1][1].strip() not in message:
                message += f" ({last})"
        return kind, message
    return None


def confirm(extensions: list[ExtensionModule], sys_path: list[str], *,
            timeout: float = 30.0, workers: int = 2) -> None:
    """Import each extension's module in a fresh interpreter; record what NumPy said.

    One import per package (the first suspect module of each): importing any module of a
    package runs the package's `__init__` first, which is where such imports fail.
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from numdoctor.redact import redact_text

    chosen: dict[str, ExtensionModule] = {}
    for ext in extensions:
        if ext.import_name:
            chosen.setdefault(ext.distribution or ext.import_name.partition(".")[0], ext)
    names = sorted({e.import_name for e in chosen.values()})
    if not names:
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys_path if p and os.path.isdir(p))
    env.pop("PYTHONSTARTUP", None)

    def attempt(name: str) -> tuple[str, str]:
        try:
            done = subprocess.run([sys.executable, "-c", _IMPORT, name], env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=timeout, cwd=os.sep)
        except subprocess.TimeoutExpired:
            return "timeout", f"import {name} did not finish within {timeout:g} s"
        except OSError as exc:
            return "error", f"could not start {sys.executable}: {exc}"
        output = done.stderr + done.stdout
        known = match_numpy_message(output)
        if known is not None:
            return "incompatible", redact_text(known[1])
        if done.returncode != 0:
            last = next((line for line in reversed(output.strip().splitlines()) if line.strip()),
                        f"exit status {done.returncode}")
            return "error", redact_text(last.strip())
        return "ok", ""

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = dict(zip(names, pool.map(attempt, names), strict=True))
    for ext in chosen.values():
        ext.runtime_status, ext.runtime_message = results[ext.import_name]
