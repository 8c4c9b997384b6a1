"""Turn snapshot facts into rows shared by the text and Markdown renderers."""

from __future__ import annotations

from typing import Any


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
    rows = []
    libraries = sorted(snapshot.get("libraries", []),
                       key=lambda lib: _FAMILY_ORDER.get(lib.get("family", ""), 9))
    for lib in libraries:
        package = lib.get("distribution") or "(system)"
        if lib.get("distribution_version"):
            package += f" {lib['distribution_version']}"
        version = lib.get("version") or ""
        layer = lib.get("threading_layer")
        if layer:
            version = f"{version} ({layer})".strip()
        rows.append([
            lib.get("family", ""),
            lib.get("vendor", ""),
            version or "-",
            "-" if lib.get("num_threads") is None else str(lib["num_threads"]),
            "-" if lib.get("active_threads") is None else str(lib["active_threads"]),
            package,
            short_path(lib.get("path", "")),
        ])
    return rows


FRAMEWORK_COLUMNS = ["framework", "version", "BLAS", "threads", "package"]


def framework_rows(snapshot: dict[str, Any]) -> list[list[str]]:
    rows = []
    for fw in snapshot.get("frameworks", []):
        details = fw.get("details", {}) or {}
        blas = details.get("blas")
        if isinstance(blas, dict):
            blas = " ".join(str(blas.get(k, "")) for k in ("name", "version")).strip()
        blas = blas or details.get("blas_info") or ""
        threads = details.get("num_threads") or details.get("intra_op_threads") or ""
        rows.append([fw.get("name", ""), fw.get("version", ""), str(blas or "-"),
                     str(threads or "-"), fw.get("distribution", "")])
    return rows


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
