"""What runs inside each cluster member: gather its facts, within its own deadline.

`collect_member` is sent by reference (module and name) to workers and to the scheduler, so
numdoctor must be installed there; only the standard library is imported at module level so
unpickling it costs the worker next to nothing.

The facts are gathered in a separate thread while the coroutine waits on the member's event
loop: the worker keeps answering its scheduler, and if the gathering hangs without holding
the GIL the member itself reports where it was stuck (its own deadline is shorter than the
client's). A member frozen with the GIL held cannot answer at all; the client's deadline
covers that case.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any


async def collect_member(imports: list[str] | None, deadline: float, import_timeout: float,
                         dask_worker: Any = None, dask_scheduler: Any = None) -> dict[str, Any]:
    """Entry point for `Client._run` / `_run_on_scheduler` (Dask fills in `dask_worker`)."""
    server = dask_worker if dask_worker is not None else dask_scheduler
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[str, Any]] = loop.create_future()
    start = time.monotonic()

    def settle(payload: dict[str, Any]) -> None:
        if not done.done():
            done.set_result(payload)

    def work() -> None:
        try:
            payload = gather_facts(imports, import_timeout)
        except BaseException as exc:
            payload = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()[-4000:]}
        try:
            loop.call_soon_threadsafe(settle, payload)
        except RuntimeError:  # the member's loop closed meanwhile: nobody is waiting
            pass

    thread = threading.Thread(target=work, name="numdoctor-fleet-collect", daemon=True)
    thread.start()
    try:
        payload = await asyncio.wait_for(asyncio.shield(done), deadline)
    except (asyncio.TimeoutError, TimeoutError):
        payload = {"status": "hang", "stack": _stack_of(thread),
                   "error": f"collecting did not finish within {deadline:g} s; the collecting "
                            "thread is still blocked in this process"}
    payload["seconds"] = round(time.monotonic() - start, 3)
    payload.update(_identity(server))
    return payload


def gather_facts(imports: list[str] | None, import_timeout: float) -> dict[str, Any]:
    """This process's snapshot (or a fresh subprocess's, after `imports`) and its packages."""
    from numdoctor._version import __version__

    if imports is None:
        from numdoctor.snapshot.collect import collect

        snapshot = collect()
    else:
        from numdoctor.snapshot.isolated import collect_isolated

        snapshot = collect_isolated(list(imports), timeout=import_timeout)
    return {
        "status": "ok",
        "snapshot": snapshot.to_dict(),
        "packages": installed_packages(),
        "numdoctor_version": __version__,
    }


def installed_packages() -> dict[str, str]:
    """Distribution name (normalised, PEP 503) -> version, as the import system would see it.

    When a distribution is installed twice on sys.path the first one wins, like an import.
    """
    import importlib.metadata
    import re

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:  # a broken METADATA file is a fact about that env, not our crash
            continue
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        found.setdefault(key, dist.version or "")
    return dict(sorted(found.items()))


def _identity(server: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                            "python": sys.version.split()[0]}
    nthreads = getattr(server, "nthreads", None)
    if isinstance(nthreads, int):
        info["nthreads"] = nthreads
    return info


def _stack_of(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return ""
    return "".join(traceback.format_stack(frame))[-4000:]
