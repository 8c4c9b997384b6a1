"""The NumPy-warning family: binaries built for another NumPy, reloads, shadowed copies,
version conflicts and BLAS/LAPACK symbol interposition."""

from __future__ import annotations

import os
from collections.abc import Iterator

from numdoctor.findings import Finding, Severity
from numdoctor.rules.registry import Rule, rule
from numdoctor.snapshot.model import ExtensionModule, NumpyBuild, Snapshot
from numdoctor.snapshot.package_names import package_label
from numdoctor.snapshot.requirements import canonicalize_name

_NUMPY2_BUILD = "built with numpy>=2.0.0rc1"
_NUMPY1_MESSAGES = ("compiled using NumPy 1.x", "_ARRAY_API not found",
                    "numpy.core.multiarray failed to import", "numpy.dtype size changed")
_NEWER_API_MESSAGES = ("compiled against NumPy C-API version", "compiled against API version",
                       "compiled against NumPy 2.0 but running on NumPy 1.x")
_MAX_LISTED = 6


# -- helpers --------------------------------------------------------------------------------
def _major(numpy: NumpyBuild | None) -> int | None:
    try:
        return int(numpy.version.split(".", 1)[0]) if numpy and numpy.version else None
    except ValueError:
        return None


def _numpy_line(numpy: NumpyBuild) -> str:
    api = f", C-API 0x{numpy.api_version:x}" if numpy.api_version else ""
    state = "loaded" if numpy.loaded else "installed, the copy `import numpy` picks"
    return f"NumPy {numpy.version}{api} ({state}) at {numpy.path}"


def _owner(ext: ExtensionModule) -> str:
    return ext.distribution or ext.import_name.partition(".")[0] or os.path.dirname(ext.path)


def _owner_label(ext: ExtensionModule) -> str:
    if ext.distribution:
        return f"{ext.distribution} {ext.distribution_version}".strip()
    return f"{_owner(ext)} (not installed by pip)"


def _group(extensions: list[ExtensionModule]) -> dict[str, list[ExtensionModule]]:
    groups: dict[str, list[ExtensionModule]] = {}
    for ext in extensions:
        groups.setdefault(_owner(ext), []).append(ext)
    return groups


def _runtime_lines(extensions: list[ExtensionModule]) -> list[str]:
    lines, seen = [], set()
    for ext in extensions:
        if ext.runtime_status and ext.import_name not in seen:
            seen.add(ext.import_name)
            said = ext.runtime_message or "imported without error"
            lines.append(f"import {ext.import_name} in a fresh interpreter "
                         f"[{ext.runtime_status}]: {said}")
    return lines


def _files_line(ext: ExtensionModule) -> str:
    what = ext.module or os.path.basename(ext.path)
    return f"{what}: {ext.path} ({', '.join(ext.markers) or 'no NumPy module name'})"


def _says(ext: ExtensionModule, messages: tuple[str, ...]) -> bool:
    return ext.runtime_status == "incompatible" and any(m in ext.runtime_message
                                                        for m in messages)


# -- ABI001 ---------------------------------------------------------------------------------
@rule("ABI001", "An extension module was built for NumPy 1.x but NumPy 2 runs",
      Severity.ERROR)
def built_for_numpy1(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A compiled module (or a library shipped with a Python package) was built with NumPy 1.x
    headers, while the NumPy that is loaded, or that `import numpy` would pick, is 2.x.
    NumPy 2 changed its ABI: such a module fails to import with

        A module that was compiled using NumPy 1.x cannot be run in NumPy 2.x as it may crash.
        AttributeError: _ARRAY_API not found
        ImportError: numpy.core.multiarray failed to import

    or, for Cython modules, `ValueError: numpy.dtype size changed, may indicate binary
    incompatibility`; where it does import, it can crash later.

    **How it is found.** numdoctor reads the read-only data of compiled files for the module
    name that NumPy's `import_array()` imports: headers of NumPy 2 name
    `numpy._core._multiarray_umath` (with `numpy.core._multiarray_umath` as fallback), headers
    of NumPy 1 only `numpy.core._multiarray_umath`. By default it reads the files already
    loaded; `numdoctor check --scan-abi` reads every installed one, and `--confirm-abi` imports
    each suspect in a fresh interpreter and quotes NumPy's own message.

    **Fix.** Upgrade the named package to a release built for NumPy 2 (its wheels are built
    with `numpy>=2.0.0rc1` and work with NumPy 1.x and 2.x alike); numdoctor names the first
    such release when it knows it. Until one exists, pin `numpy<2` in that environment.
    A package declaring `numpy>=1.x` without an upper bound did not stop pip from installing
    NumPy 2 next to it: that is why this happens.
    """
    binary = snapshot.binary
    numpy = binary.numpy
    if numpy is None or (_major(numpy) or 0) < 2:
        return
    suspects = [e for e in binary.extensions
                if (e.numpy_headers == "1.x" or _says(e, _NUMPY1_MESSAGES))
                and not _says(e, _NEWER_API_MESSAGES)]
    for exts in _group(suspects).values():
        first = exts[0]
        confirmed = any(e.runtime_status == "incompatible" for e in exts)
        imports_fine = all(e.runtime_status == "ok" for e in exts)
        evidence = [f"{_owner_label(first)}: {len(exts)} compiled file(s) built with NumPy 1.x "
                    "headers (they name numpy.core._multiarray_umath, not "
                    "numpy._core._multiarray_umath)"]
        evidence += [_files_line(e) for e in exts[:_MAX_LISTED]]
        if len(exts) > _MAX_LISTED:
            evidence.append(f"... and {len(exts) - _MAX_LISTED} more")
        evidence.append(_numpy_line(numpy))
        if first.requires_numpy:
            evidence.append(f"{first.distribution} declares `{first.requires_numpy}`, which "
                            f"allows NumPy {numpy.version}")
        evidence += _runtime_lines(exts)
        if not any(e.runtime_status for e in exts):
            evidence.append("static evidence only: `numdoctor check --confirm-abi` imports it "
                            "and quotes NumPy's message")
        loaded = any(e.loaded for e in exts)
        why = (f"{'It is loaded in this process and' if loaded else 'Importing it'} "
               + ("fails" if confirmed else "will fail or crash")
               + f" under NumPy {numpy.version}: NumPy 2 changed its binary interface.")
        if imports_fine:
            why = ("It imported in a fresh interpreter, but modules built for NumPy 1.x can "
                   "crash or return wrong results on first use under NumPy 2.")
        yield rule.finding(
            evidence,
            title=f"{_owner_label(first)} was built for NumPy 1.x but NumPy {numpy.version} "
                  f"{'is loaded' if numpy.loaded else 'is installed'}",
            why=why, fix=_abi001_fix(first, numpy),
            severity=Severity.WARNING if imports_fine else Severity.ERROR,
        )


def _abi001_fix(ext: ExtensionModule, numpy: NumpyBuild) -> str:
    if not ext.distribution:
        name = ext.module or ext.path
        return (f"Rebuild {name} against NumPy 2 headers (build it {_NUMPY2_BUILD}); such a "
                "build works with NumPy 1.x and 2.x. Or pin 'numpy<2' in this environment.")
    from numdoctor.snapshot.known_pairs import known_pair

    known = known_pair(ext.distribution, ext.distribution_version, "numpy", numpy.version)
    if known is not None:
        return (f"pip install '{ext.distribution}>={known.fixed_in}' — {known.fixed_in} is the "
                f"first {ext.distribution} release built for NumPy 2 (source: {known.source}). "
                "Or, until you can upgrade, pin 'numpy<2' in this environment.")
    return (f"Upgrade {ext.distribution} to a release built for NumPy 2 (one {_NUMPY2_BUILD}): "
            f"pip install --upgrade '{ext.distribution}'. If none exists yet, pin 'numpy<2' in "
            "this environment.")


# -- ABI002 ---------------------------------------------------------------------------------
@rule("ABI002", "An extension module needs a newer NumPy C-API than the one that runs",
      Severity.ERROR)
def needs_newer_numpy(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A compiled module was built to require a NumPy C-API newer than the NumPy that is loaded
    or installed. NumPy refuses to import it:

        RuntimeError: module was compiled against NumPy C-API version 0x15 (NumPy 2.4) but the
        running NumPy has C-API version 0x13.

    (`module compiled against API version 0x.. but this version of numpy is 0x..` with NumPy 1
    headers.) It happens when a package is upgraded without NumPy, when an older NumPy
    shadows the installed one (RELOAD002), or with a module built locally against a newer
    NumPy than the environment's.

    **How it is found.** Headers from NumPy 1.25 on write the C-API version a module needs
    into its error message, "(NumPy X.Y)"; numdoctor reads it from the binary and compares it
    with the `NPY_API_VERSION` in the running NumPy's own headers. `--confirm-abi` quotes
    NumPy's message from a test import.

    **Fix.** Upgrade NumPy to at least the version named, or install a build of the package
    that targets the NumPy you run.
    """
    binary = snapshot.binary
    numpy = binary.numpy
    if numpy is None:
        return
    suspects = []
    for ext in binary.extensions:
        too_new = bool(ext.target_api_version and numpy.api_version
                       and ext.target_api_version > numpy.api_version)
        two_on_one = ext.numpy_headers == "2.x" and _major(numpy) == 1 and not ext.target_api
        if too_new or two_on_one or _says(ext, _NEWER_API_MESSAGES):
            suspects.append(ext)
    for exts in _group(suspects).values():
        first = exts[0]
        targets = sorted({e.target_api for e in exts if e.target_api},
                         key=lambda v: tuple(int(x) for x in v.split(".")))
        need = targets[-1] if targets else "2.0"
        evidence = [f"{_owner_label(first)}: {len(exts)} compiled file(s) need the C-API of "
                    f"NumPy {need}" + (f" (0x{max(e.target_api_version or 0 for e in exts):x})"
                                       if targets else "")]
        evidence += [_files_line(e) for e in exts[:_MAX_LISTED]]
        evidence.append(_numpy_line(numpy))
        evidence += _runtime_lines(exts)
        confirmed = any(_says(e, _NEWER_API_MESSAGES) for e in exts)
        yield rule.finding(
            evidence,
            title=f"{_owner_label(first)} needs NumPy >= {need} but NumPy {numpy.version} "
                  f"{'is loaded' if numpy.loaded else 'is installed'}",
            why=("Importing it " + ("fails" if confirmed else "will fail")
                 + f": NumPy {numpy.version} lacks C-API functions it was compiled to use."),
            fix=(f"pip install 'numpy>={need}' (check that no older NumPy copy shadows it, see "
                 f"RELOAD002), or install a {first.distribution or _owner(first)} build that "
                 f"targets NumPy {numpy.version}."),
            severity=Severity.ERROR if targets or confirmed else Severity.WARNING,
        )


# -- RELOAD001 ------------------------------------------------------------------------------
@rule("RELOAD001", "A numerical module was imported a second time in this process",
      Severity.WARNING)
def module_reloaded(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    A numerical package was executed twice in this process: `importlib.reload()` (directly,
    through IPython's `%autoreload`, or a plugin framework), a purge of `sys.modules` followed
    by a new import, or the same file imported under two names. For NumPy this is what
    produces

        UserWarning: The NumPy module was reloaded (imported a second time). This can in some
        cases result in small but subtle issues and is discouraged.

    and, after a purge, `ImportError: cannot load module more than once per process`.

    **Why it matters.** Compiled modules are never reloaded, so the Python half is new and
    the C half keeps its old state: classes, dtypes, enums and singletons (`np._NoValue`,
    `np.bool_`) exist twice, `isinstance` checks and identity comparisons between the two
    halves fail, and caches keep pointing at the old objects.

    **How it is found.** In the live process: a module whose `__spec__` never went through the
    normal import path (reload leaves `spec._initializing` unset), NumPy's warning in a warning
    registry, modules that still hold an older module object than `sys.modules`, and files
    loaded under two names.

    **Fix.** Restart the interpreter (or the notebook kernel) instead of reloading numerical
    packages. With IPython's autoreload, exclude them: `%aimport -numpy` (likewise for scipy,
    torch...). Never delete their entries from `sys.modules`.
    """
    by_module: dict[str, list[str]] = {}
    for reload in snapshot.binary.reloads:
        root = reload.module.partition(".")[0]
        by_module.setdefault(root, []).append(f"[{reload.how}] {reload.detail}")
    for module, evidence in by_module.items():
        yield rule.finding(
            evidence, title=f"{module} was imported a second time in this process",
            why=("Its compiled parts were not reloaded: the process now holds two copies of "
                 "its Python-level state, so identity and isinstance checks between them fail "
                 "and subtle errors follow."),
            fix=(f"Restart the interpreter or kernel instead of reloading {module}; with "
                 f"IPython autoreload use `%aimport -{module}`; do not remove it from "
                 "sys.modules."),
        )


# -- RELOAD002 ------------------------------------------------------------------------------
@rule("RELOAD002", "Two copies of a package are reachable on sys.path", Severity.WARNING)
def package_shadowed(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    The same numerical package exists in more than one `sys.path` directory: a `pip install
    --target` or `--user` copy, a `PYTHONPATH` entry, a source checkout in the current
    directory, or two environments mixed. Python imports the first one on `sys.path`; tools
    that read metadata (pip, `importlib.metadata`) may describe the other.

    **Why it matters.** The version you installed is not the one that runs; compiled modules of
    one copy can load next to Python files of the other; and a package built for one copy's
    NumPy runs against the other (ABI001, ABI002). When both copies have native code mapped
    into the process, two copies of the package run at once.

    **Fix.** Remove the copy you do not want (`pip uninstall` it from that location, or delete
    the directory), or drop its directory from `PYTHONPATH`/`sys.path`.
    `python -c "import numpy; print(numpy.__file__)"` shows which copy wins.
    """
    for shadow in snapshot.binary.shadowed:
        winner = shadow.imported or shadow.copies[0].path
        evidence = []
        for copy in shadow.copies:
            label = package_label(copy.distribution, copy.version) if copy.distribution \
                else (f"version {copy.version}, " if copy.version else "") + "no package metadata"
            marks = []
            if copy.path == winner:
                marks.append("imported" if shadow.imported else "would be imported")
            if copy.native_mapped:
                marks.append("native code loaded")
            evidence.append(f"{copy.path} [{label}] (sys.path[{copy.sys_path_index}])"
                            + (f" <- {', '.join(marks)}" if marks else ""))
        both_loaded = sum(c.native_mapped for c in shadow.copies) > 1
        others = [c.path for c in shadow.copies if c.path != winner]
        versions = {c.version for c in shadow.copies if c.version}
        yield rule.finding(
            evidence,
            title=f"{len(shadow.copies)} copies of {shadow.name} are on sys.path; "
                  f"{'the imported one is' if shadow.imported else 'import picks'} {winner}",
            why=("Native code of more than one copy is loaded in this process: two copies of "
                 f"{shadow.name} run at once." if both_loaded else
                 "The copy that runs is not necessarily the one pip installed"
                 + (f" (versions {', '.join(sorted(versions))})" if len(versions) > 1 else "")
                 + "; packages built against the other copy can fail (ABI001/ABI002)."),
            fix=(f"Remove the copy you do not want ({', '.join(others)}) or drop its directory "
                 f"from PYTHONPATH/sys.path; check with `python -c \"import {shadow.name}; "
                 f"print({shadow.name}.__file__)\"`."),
            severity=Severity.ERROR if both_loaded else Severity.WARNING,
        )


# -- VER001 ---------------------------------------------------------------------------------
@rule("VER001", "Installed numerical packages have conflicting versions", Severity.WARNING)
def version_conflicts(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    Two kinds of version conflict among the installed numerical packages:

    1. A declared requirement that the installed versions do not meet (what `pip check`
       reports, limited to the numerical stack): e.g. a package requiring `numpy<2` next to
       NumPy 2. pip warns about it when it happens, and the warning scrolls away.
    2. A version pair known not to work although its metadata allows it: packages released
       before NumPy 2 usually declared `numpy>=1.x` with no upper bound, so pip happily
       installs NumPy 2 next to a build that cannot run on it. numdoctor keeps a small table
       of such pairs (`numdoctor/data/known_incompatibilities.json`), each with its public
       source and the first fixed release.

    **Fix.** Upgrade the package named to a version whose requirements the environment meets
    (the finding names the first fixed release when it is known), or install the dependency
    version it asks for. `pip install 'pkg>=X'` re-resolves both.
    """
    binary = snapshot.binary
    for conflict in binary.conflicts:
        if conflict.installed:
            title = (f"{conflict.distribution} {conflict.version} requires "
                     f"{conflict.requirement} but {conflict.dependency} {conflict.installed} "
                     "is installed")
            fix = (f"Install a {conflict.dependency} version that matches "
                   f"`{conflict.requirement}`, or upgrade {conflict.distribution} to a release "
                   f"that supports {conflict.dependency} {conflict.installed}.")
        else:
            title = (f"{conflict.distribution} {conflict.version} requires "
                     f"{conflict.requirement} but {conflict.dependency} is not installed")
            fix = f"pip install '{conflict.requirement}'"
        yield rule.finding(
            [f"{conflict.distribution} {conflict.version} declares Requires-Dist: "
             f"{conflict.requirement}",
             f"installed: {conflict.dependency} {conflict.installed or '(missing)'}"],
            title=title,
            why="pip installed a combination the package says it does not support; expect "
                "import errors or wrong behaviour in the code paths that need it.",
            fix=fix,
        )
    covered = {canonicalize_name(e.distribution) for e in binary.extensions
               if e.distribution and e.numpy_headers == "1.x"}
    for pair in binary.known_incompatible:
        if pair.distribution in covered:
            continue  # ABI001 reports the same problem with the binaries as evidence
        yield rule.finding(
            [f"installed: {pair.distribution} {pair.version} and {pair.other} "
             f"{pair.other_version}",
             f"known incompatible: {pair.distribution} {pair.affected} with {pair.other} "
             f"{pair.other_versions} — {pair.problem}",
             f"source: {pair.source}"],
            title=f"{pair.distribution} {pair.version} does not work with {pair.other} "
                  f"{pair.other_version}",
            why=pair.problem,
            fix=(f"pip install '{pair.distribution}>={pair.fixed_in}' (the first fixed release), "
                 f"or install {pair.other} outside `{pair.other_versions}`."),
            severity=Severity.ERROR,
        )


# -- SYM001 ---------------------------------------------------------------------------------
@rule("SYM001", "Several loaded libraries export the same BLAS/LAPACK symbols under "
      "RTLD_GLOBAL", Severity.WARNING)
def blas_symbol_interposition(snapshot: Snapshot, rule: Rule) -> Iterator[Finding]:
    """
    `sys.getdlopenflags()` includes `RTLD_GLOBAL` (set by `sys.setdlopenflags`, by some
    frameworks' loaders, or by `ctypes.CDLL(..., mode=RTLD_GLOBAL)` users) and two or more
    loaded libraries export the same Fortran-ABI BLAS/LAPACK entry points (`dgemm_`,
    `dgesdd_`, `dsyevd_`...). Libraries opened with `RTLD_GLOBAL` put their symbols in the
    global scope, and every library loaded afterwards that calls `dgemm_` by that name binds
    to the first definition there, not to its own BLAS.

    **Why it matters.** Calls go to a BLAS built with another integer width (LP64 vs ILP64),
    another threading layer or another ABI: segfaults, hangs or silently wrong results that
    depend on import order (pytorch#786 and #31439; tensorflow#14034, where `svd` crashed only
    after `import tensorflow` with MKL). `LD_PRELOAD` of a BLAS has the same effect.

    **How it is found.** Every mapped ELF object is asked, through its own GNU hash table, for
    a fixed list of BLAS/LAPACK names; only defined, exported functions count. Vendored
    copies with prefixed names (scipy-openblas's `scipy_dgemm_`) cannot clash and are not
    reported, nor is an interface library that exports the names of the implementation
    behind it (Debian's `libblas.so.3` in front of OpenBLAS: the same code runs either way).

    **Fix.** Do not set `RTLD_GLOBAL` process-wide: remove the `sys.setdlopenflags` call (for
    PyTorch, unset `USE_RTLD_GLOBAL_WITH_LIBTORCH`), or restore the previous flags right after
    the import that needs them. If it cannot be avoided, import the package whose BLAS should
    serve everyone first, and use one BLAS vendor for the whole environment.
    """
    clashes = snapshot.binary.symbol_clashes
    preload = snapshot.environment.get("LD_PRELOAD", "")
    if not clashes:
        return
    serving = {lib.path: lib.implementation or lib.path for lib in snapshot.libraries}
    for clash in clashes:
        if len({serving.get(lib.path, lib.path) for lib in clash.libraries}) < 2:
            continue  # an interface library and its implementation: the same code runs
        preloaded = [lib.path for lib in clash.libraries
                     if preload and os.path.basename(lib.path) in preload]
        if not snapshot.process.rtld_global and not preloaded:
            continue
        evidence = ["sys.getdlopenflags() includes RTLD_GLOBAL" if snapshot.process.rtld_global
                    else f"LD_PRELOAD={preload}"]
        for lib in clash.libraries:
            owner = f"{lib.distribution} {lib.distribution_version}".strip() \
                if lib.distribution else "installed by no package manager"
            evidence.append(f"{lib.path} [{owner}] exports {', '.join(clash.symbols[:8])}"
                            + (f" (+{len(clash.symbols) - 8} more)" if len(clash.symbols) > 8
                               else ""))
        names = ", ".join(os.path.basename(lib.path) for lib in clash.libraries)
        yield rule.finding(
            evidence,
            title=f"{len(clash.libraries)} loaded libraries export {clash.symbols[0]} and "
                  f"{len(clash.symbols) - 1} other BLAS/LAPACK symbol(s): {names}",
            why=("With global symbol binding, a call to these names may run in another "
                 "library's BLAS than the caller was built for: crashes or wrong results that "
                 "depend on import order."),
            fix=("Remove the RTLD_GLOBAL setting (sys.setdlopenflags, "
                 "USE_RTLD_GLOBAL_WITH_LIBTORCH) or the LD_PRELOAD, or restore the default flags "
                 "right after the import that needs them; otherwise import the package whose "
                 "BLAS should serve everyone first."),
        )
