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

import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where it runs, in a Dask process (its loop has it loaded)
    import asyncio

_NON_ALNUM = re.compile(r"[-_.]+")
_ONE_AT_A_TIME = threading.Lock()


async def collect_member(imports: list[str] | None, deadline: float, import_timeout: float,
                         dask_worker: Any = None, dask_scheduler: Any = None) -> dict[str, Any]:
    """Entry point for `Client._run` / `_run_on_scheduler` (Dask fills in `dask_worker`)."""
    import asyncio

    server = dask_worker if dask_worker is not None else dask_scheduler
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the member's loop closed meanwhile: nobody is waiting
            pass

    collection = Collection(imports, import_timeout, deadline, on_done=wake).start()
    try:
        await asyncio.wait_for(asyncio.shield(finished), deadline)
    except (asyncio.TimeoutError, TimeoutError):
        pass
    payload = collection.outcome()
    payload.update(identity(server))
    return payload


class Collection:
    """`gather_facts` in a daemon thread, with a deadline the caller waits against.

    One collection runs at a time per process: the client and a LocalCluster's scheduler
    share a process, and the collector adjusts process-wide state (it undoes threadpoolctl's
    KMP_DUPLICATE_LIB_OK). A collection still blocked from an earlier run is reported as such.
    """

    def __init__(self, imports: list[str] | None, import_timeout: float, deadline: float,
                 on_done: Callable[[], None] | None = None) -> None:
        self.imports = imports
        self.import_timeout = import_timeout
        self.deadline = deadline
        self.on_done = on_done
        self.started = time.monotonic()
        self.payload: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._work, name="numdoctor-fleet-collect",
                                       daemon=True)

    def start(self) -> Collection:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def wait(self) -> dict[str, Any]:
        """Block until done or the deadline (from `start`), then the outcome."""
        self.finished.wait(max(0.0, self.deadline - (time.monotonic() - self.started)))
        return self.outcome()

    def outcome(self) -> dict[str, Any]:
        if self.finished.is_set() and self.payload is not None:
            payload = dict(self.payload)
        else:
            payload = {"status": "hang", "stack": _stack_of(self.thread),
                       "error": f"collecting did not finish within {self.deadline:g} s; the "
                                "collecting thread is still blocked in this process"}
        payload["seconds"] = round(time.monotonic() - self.started, 3)
        return payload

    def _work(self) -> None:
        remaining = self.deadline - (time.monotonic() - self.started)
        if not _ONE_AT_A_TIME.acquire(timeout=max(0.0, remaining)):
            self.payload = {"status": "hang", "stack": "",
                            "error": "an earlier numdoctor collection in this process is "
                                     "still blocked"}
        else:
            try:
                self.payload = gather_facts(self.imports, self.import_timeout)
            except BaseException as exc:
                from numdoctor.redact import clip_tail

                self.payload = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                                "traceback": clip_tail(traceback.format_exc(), 4000)}
            finally:
                _ONE_AT_A_TIME.release()
        self.finished.set()
        if self.on_done is not None:
            self.on_done()


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
    Only the metadata headers are read: parsing whole METADATA files through the email
    parser (what `Distribution.metadata` does) costs a worker 1 ms per package.
    """
    import importlib.metadata

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        except OSError:  # unreadable metadata is a fact about that env, not our crash
            continue
        name, version = _name_version(text)
        if name:
            found.setdefault(_NON_ALNUM.sub("-", name).lower(), version)
    return dict(sorted(found.items()))


def _name_version(metadata: str) -> tuple[str, str]:
    name = version = ""
    for line in metadata.splitlines():
        if not line:  # the headers end at the first empty line
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            break
    return name, version


def identity(server: Any = None) -> dict[str, Any]:
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
    from numdoctor.redact import clip_tail

    return clip_tail("".join(traceback.format_stack(frame)), 4000)
