"""Which operating-system package installed a file: dpkg (Debian, Ubuntu) or rpm (Fedora,
RHEL, SUSE).

`dpkg -S` reads the whole package database and takes about a second; rpm's database needs
its own program. Neither is on `check`'s path more than once per state of the database:

- dpkg: `/var/lib/dpkg/info/<package>.list` names every file of a package. A lookup first
  reads the few lists whose package names resemble the file's name or directory
  (`libopenblasp-r0.3.21.so` in `openblas-pthread/` -> `libopenblas0-pthread`), and only
  when they do not list it indexes every list, once per process.
- rpm: one `rpm -qf` per file, only where an rpm database exists.

Answers are kept on disk (numdoctor.snapshot.cache) keyed by the database's state (the
mtime and size of dpkg's `status` file, of rpm's database file), so a second `check` on an
unchanged system reads one small JSON file.
"""

from __future__ import annotations

import os
import re
from functools import cache

from numdoctor.snapshot import cache as disk_cache

Owner = tuple[str, str]  # ("deb:<name>" or "rpm:<name>", version)

DPKG_ROOT = "/var/lib/dpkg"
RPM_DATABASES = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite",
                 "/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages",
                 "/var/lib/rpm/Packages.db")

# Words of a path that say nothing about which package ships it.
_GENERIC = frozenset({
    "lib", "lib64", "usr", "local", "share", "python", "python3", "dist", "packages", "site",
    "linux", "gnu", "x86_64", "aarch64", "i386", "libexec", "include", "init", "core",
    "cpython", "so",
})
_WORD = re.compile(r"[a-z][a-z0-9+]{3,}")


# Where package managers install; a file elsewhere (a home directory, /tmp) is nobody's.
_MANAGED = ("/usr/", "/lib", "/bin/", "/sbin/", "/opt/", "/etc/", "/var/")


def os_package_owner(path: str, *, dpkg_root: str = DPKG_ROOT) -> Owner | None:
    """(`deb:name` or `rpm:name`, version) of the OS package that installed `path`.

    `dpkg_root` is dpkg's database directory (tests point it at a tree of their own).
    """
    real = os.path.realpath(path)
    return _owner(real, dpkg_root) if real.startswith(_MANAGED) else None


@cache
def _owner(real: str, dpkg_root: str) -> Owner | None:
    dpkg = _dpkg(dpkg_root)
    if dpkg is not None:
        found = dpkg.owner(real)
        if found is not None:
            return found
    rpm = _rpm()
    return rpm.owner(real) if rpm is not None else None


class _AnswerCache:
    """Answers for one state of a package database, on disk and in memory."""

    def __init__(self, kind: str, state: str) -> None:
        self.state = state
        directory = disk_cache.cache_dir()
        self.file = (os.path.join(directory, f"{kind}-owners-{disk_cache.short_hash(state)}"
                                  ".json") if directory else None)
        stored = disk_cache.load(self.file) if self.file else None
        owners = stored.get("owners") if isinstance(stored, dict) \
            and stored.get("state") == state else None
        self.owners: dict[str, list[str] | None] = owners if isinstance(owners, dict) else {}

    def get(self, path: str) -> tuple[bool, Owner | None]:
        """(known, owner)."""
        if path not in self.owners:
            return False, None
        value = self.owners[path]
        return True, (value[0], value[1]) if isinstance(value, list) and len(value) == 2 \
            else None

    def put(self, path: str, owner: Owner | None) -> None:
        self.owners[path] = list(owner) if owner else None
        if self.file:
            disk_cache.store(self.file, {"state": self.state, "owners": self.owners})


def _state(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


@cache
def _dpkg(root: str) -> _Dpkg | None:
    state = _state(os.path.join(root, "status"))
    if state is None or not os.path.isdir(os.path.join(root, "info")):
        return None
    return _Dpkg(root, state)


class _Dpkg:
    def __init__(self, root: str, state: str) -> None:
        self.info = os.path.join(root, "info")
        self.status_file = os.path.join(root, "status")
        self.answers = _AnswerCache("dpkg", state)
        self._lists: list[str] | None = None
        self._index: dict[str, str] | None = None
        self._status: str | None = None

    def owner(self, real: str) -> Owner | None:
        known, owner = self.answers.get(real)
        if known:
            return owner
        owner = self._lookup(real)
        self.answers.put(real, owner)
        return owner

    def _lookup(self, real: str) -> Owner | None:
        # Merged /usr: a package may list /lib/x/libfoo.so.1 for /usr/lib/x/libfoo.so.1.
        names = [real]
        if real.startswith("/usr/"):
            names.append(real[4:])
        wanted = {f"{name}\n".encode() for name in names}
        for list_file in self._guesses(real):
            if self._lists_file(list_file, wanted):
                return self._versioned(list_file)
        index = self._full_index()
        for name in names:
            package = index.get(name)
            if package is not None:
                return self._versioned(package)
        return None

    def lists(self) -> list[str]:
        if self._lists is None:
            try:
                self._lists = sorted(n for n in os.listdir(self.info) if n.endswith(".list"))
            except OSError:
                self._lists = []
        return self._lists

    def _guesses(self, real: str) -> list[str]:
        """The .list files whose package name shares a word with the file's last path
        components (lib name, directory, Python package)."""
        words: set[str] = set()
        for component in real.lower().split("/")[-3:]:
            for word in _WORD.findall(component):
                if word in _GENERIC:
                    continue
                words.add(word)
                if word.startswith("lib") and len(word) > 6:
                    words.add(word[3:])
                if len(word) > 6:
                    words.add(word[:-1])  # libopenblasp -> libopenblas
        words -= _GENERIC
        return [name for name in self.lists() if any(word in name[:-5] for word in words)]

    def _lists_file(self, list_file: str, wanted: set[bytes]) -> bool:
        try:
            with open(os.path.join(self.info, list_file), "rb") as fh:
                data = b"\n" + fh.read()
        except OSError:
            return False
        return any(b"\n" + line in data for line in wanted)

    def _full_index(self) -> dict[str, str]:
        if self._index is None:
            index: dict[str, str] = {}
            for list_file in self.lists():
                try:
                    with open(os.path.join(self.info, list_file), "rb") as fh:
                        for line in fh.read().decode("utf-8", "surrogateescape").splitlines():
                            index.setdefault(line, list_file)
                except OSError:
                    continue
            self._index = index
        return self._index

    def _versioned(self, list_file: str) -> Owner:
        package, _, arch = list_file[:-len(".list")].partition(":")
        return f"deb:{package}", self._version(package, arch)

    def _version(self, package: str, arch: str) -> str:
        if self._status is None:
            try:
                with open(self.status_file, encoding="utf-8", errors="replace") as fh:
                    self._status = "\n" + fh.read()
            except OSError:
                self._status = ""
        status = self._status
        start = status.find(f"\nPackage: {package}\n")
        while start >= 0:
            end = status.find("\n\n", start + 1)
            stanza = status[start:end if end >= 0 else len(status)]
            fields = dict(line.split(": ", 1) for line in stanza.strip().splitlines()
                          if ": " in line and not line.startswith(" "))
            if not arch or fields.get("Architecture") in (arch, "all"):
                return fields.get("Version", "")
            start = status.find(f"\nPackage: {package}\n", start + 1)
        return ""


@cache
def _rpm() -> _Rpm | None:
    import shutil  # with subprocess, only where rpm may answer: off `check`'s usual path

    program = shutil.which("rpm")
    if program is None:
        return None
    for database in RPM_DATABASES:
        state = _state(database)
        if state is not None:
            return _Rpm(program, state)
    return None


class _Rpm:
    def __init__(self, program: str, state: str) -> None:
        self.program = program
        self.answers = _AnswerCache("rpm", state)

    def owner(self, real: str) -> Owner | None:
        known, owner = self.answers.get(real)
        if known:
            return owner
        owner = self._query(real)
        self.answers.put(real, owner)
        return owner

    def _query(self, real: str) -> Owner | None:
        import subprocess

        try:
            done = subprocess.run(
                [self.program, "-qf", "--queryformat", r"%{NAME}\t%{VERSION}-%{RELEASE}\n",
                 real], capture_output=True, text=True, timeout=10, errors="replace")
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            return None  # "file ... is not owned by any package"
        name, _, version = done.stdout.splitlines()[0].partition("\t") if done.stdout \
            else ("", "", "")
        return (f"rpm:{name}", version) if name else None
