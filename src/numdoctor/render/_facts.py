"""Turn snapshot facts into rows shared by the text and Markdown renderers."""

from __future__ import annotations

import os
from typing import Any

from numdoctor.snapshot.package_names import package_label


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def _known(value: Any, fallback: str = "?") -> str:
    return fallback if value in (None, "") else str(value)


def system_lines(snapshot: dict[str, Any]) -> list[str]:
    """The facts as short lines; unknown ones (a snapshot taken from outside the process
    knows less) are shown as '?' or left out, never as 'None'."""
    s = snapshot.get("system", {}) or {}
    cg = s.get("cgroup", {}) or {}
    quota = cg.get("cpu_quota")
    process = snapshot.get("process", {}) or {}
    lines = []
    python = f"Python {_known(s.get('python_version'))}"
    if s.get("python_executable"):
        python += f" ({s['python_executable']})"
    platform = ", ".join(x for x in (s.get("os"), s.get("kernel") and f"kernel {s['kernel']}",
                                     s.get("libc")) if x)
    lines.append(python + (f" on {platform}" if platform else ""))
    if s.get("cpu_model") or s.get("cpu_flags"):
        lines.append(f"CPU: {_known(s.get('cpu_model'))} [{' '.join(s.get('cpu_flags', []))}]")
    lines.append(
        f"CPUs: {_known(s.get('cpu_count'))} online, affinity {_known(s.get('affinity_count'))}"
        f", cgroup v{cg.get('version') or '-'} quota "
        f"{'none' if quota is None else f'{quota:g}'} -> effective "
        f"{_known(s.get('effective_cpus'))}")
    lines.append(f"Memory: {_mib(s.get('memory_total'))} total, cgroup limit "
                 f"{'none' if cg.get('memory_limit') is None else _mib(cg.get('memory_limit'))}")
    parts = [f"pid {process['pid']}"] if process.get("pid") else []
    if process.get("threads_total") is not None:
        python_threads = _known(process.get("python_threads"))
        parts.append(f"{process['threads_total']} OS threads ({python_threads} Python)")
    if process.get("start_method"):
        method = process["start_method"]
        if not process.get("start_method_explicit"):
            method += " (default)"
        parts.append(f"multiprocessing start method {method}")
    if process.get("rtld_global"):
        parts.append("RTLD_GLOBAL")
    if parts:
        lines.append("Process: " + ", ".join(parts))
    return lines


LIBRARY_COLUMNS = ["family", "library", "version", "threads", "running", "package", "path"]


_FAMILY_ORDER = {"openmp": 0, "blas": 1, "cuda": 2, "cxx": 3}


def short_path(path: str) -> str:
    """Paths inside site-packages shown from there: the package column names the owner."""
    marker = "/site-packages/"
    return path.split(marker, 1)[1] if marker in path else path


def library_rows(snapshot: dict[str, Any]) -> list[list[str]]:
    """One row per library; an interface library comes right after the implementation that
    runs its calls, marked as such."""
    libraries = sorted(snapshot.get("libraries", []),
                       key=lambda lib: _FAMILY_ORDER.get(lib.get("family", ""), 9))
    interfaces: dict[str, list[dict[str, Any]]] = {}
    for lib in libraries:
        if lib.get("implementation"):
            interfaces.setdefault(lib["implementation"], []).append(lib)
    shown = {lib.get("path") for lib in libraries}
    rows = []
    for lib in libraries:
        if lib.get("implementation") in shown:
            continue  # listed under its implementation
        rows.append(_library_row(lib))
        rows.extend(_library_row(front, interface=True)
                    for front in interfaces.get(lib.get("path", ""), []))
    return rows


def _library_row(lib: dict[str, Any], *, interface: bool = False) -> list[str]:
    package = package_label(lib.get("distribution") or "",
                            lib.get("distribution_version") or "") or "(no package)"
    version = lib.get("version") or ""
    layer = lib.get("threading_layer")
    if layer:
        version = f"{version} ({layer})".strip()
    path = short_path(lib.get("path", ""))
    if lib.get("alternatives"):
        path += f" (alternative {', '.join(lib['alternatives'])})"
    if interface:
        return ["", "↳ interface", "-", "-", "-", package, path]
    return [
        lib.get("family", ""),
        lib.get("vendor", ""),
        version or "-",
        "-" if lib.get("num_threads") is None else str(lib["num_threads"]),
        "-" if lib.get("active_threads") is None else str(lib["active_threads"]),
        package,
        path,
    ]


FRAMEWORK_COLUMNS = ["framework", "version", "BLAS", "thread pools", "package"]


def framework_rows(snapshot: dict[str, Any]) -> list[list[str]]:
    by_path = {lib.get("path"): lib for lib in snapshot.get("libraries", [])}
    rows = []
    for fw in snapshot.get("frameworks", []):
        details = fw.get("details", {}) or {}
        rows.append([fw.get("name", ""), fw.get("version", ""),
                     _framework_blas(fw, details, by_path) or "-",
                     _framework_pools(fw, details) or "-",
                     package_label(fw.get("distribution") or "")])
    return rows


def _framework_blas(fw: dict[str, Any], details: dict[str, Any],
                    by_path: dict[str, dict[str, Any]]) -> str:
    """The BLAS that serves the framework's calls (found through what its modules are linked
    to); the one it was built against when that cannot be told."""
    served = []
    for path in fw.get("blas_libraries") or []:
        lib = by_path.get(path, {})
        name = " ".join(x for x in (lib.get("vendor") or "?", lib.get("version") or "") if x)
        fronts = [os.path.basename(other["path"]) for other in by_path.values()
                  if other.get("implementation") == path]
        served.append(name + (f" via {', '.join(fronts)}" if fronts else ""))
    if served:
        return "; ".join(served)
    blas = details.get("blas")
    if isinstance(blas, dict):
        blas = " ".join(str(blas.get(k, "")) for k in ("name", "version")).strip()
    blas = blas or details.get("blas_info") or ""
    return f"{blas} (build)" if blas else ""


def _framework_pools(fw: dict[str, Any], details: dict[str, Any]) -> str:
    pools = fw.get("pools") or []
    if not pools:
        threads = details.get("num_threads") or details.get("intra_op_threads") or ""
        return str(threads)
    parts = []
    for pool in pools:
        size = "?" if pool.get("size") is None else str(pool["size"])
        parts.append(f"{pool.get('name', '')} {size}" + (" (set)" if pool.get("configured")
                                                          else ""))
    return ", ".join(parts)


IMPORT_COLUMNS = ["module", "status", "seconds", "detail"]


def import_rows(snapshot: dict[str, Any]) -> list[list[str]]:
    return [[a["module"], a["status"], f"{a.get('seconds', 0):.2f}", _import_detail(a)]
            for a in snapshot.get("imports", [])]


def _import_detail(attempt: dict[str, Any]) -> str:
    if attempt.get("detail"):
        return attempt["detail"].splitlines()[0][:100]
    if attempt.get("environment_set"):
        return f"set {', '.join(attempt['environment_set'])}"[:100]
    return ""


def environment_lines(snapshot: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in (snapshot.get("environment") or {}).items()]


def summary_line(data: dict[str, Any]) -> str:
    counts = data.get("summary", {})
    parts = [f"{counts.get(k, 0)} {k}{'s' if counts.get(k, 0) != 1 and k != 'info' else ''}"
             for k in ("error", "warning", "info")]
    return ", ".join(parts)
