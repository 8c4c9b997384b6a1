"""The workers' side of a fleet probe: coroutines the client sends by reference through
Dask (numdoctor must be installed on the workers, in the same version). Each runs the probe's
supervised subprocesses from a thread, so the worker's event loop keeps answering its
scheduler, and answers within its limit with what it has."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from numdoctor.fleet import runner
from numdoctor.probe.canaries import Canary
from numdoctor.probe.engine import Failure, installed, minimize_and_mitigate, run_many
from numdoctor.probe.scenarios import Scenario

# Environment variables of a worker that change what its scenarios do; shown per worker.
INHERITED = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
             "OMP_THREAD_LIMIT", "MKL_THREADING_LAYER", "KMP_DUPLICATE_LIB_OK", "LD_PRELOAD")


async def survey_worker(modules: list[str], canaries: list[Canary], timeout: float,
                        hang_timeout: float, jobs: int, budget: float | None,
                        limit: float) -> dict[str, Any]:
    """Which `modules` this worker has, and each operation it can run alone (its baselines;
    None where the module is missing or the budget ran out)."""
    import os
    import socket

    def work() -> dict[str, Any]:
        present, _ = installed(modules)
        tops = _tops(present)
        runnable = [c for c in canaries if _tops([c.module]) <= tops]
        results = iter(run_many([Scenario((c.module,), c) for c in runnable], timeout=timeout,
                                hang_timeout=hang_timeout, jobs=jobs, budget=budget))
        baselines = [next(results) if c in runnable else None for c in canaries]
        return {"status": runner.OK, "present": present, "baselines": baselines,
                "hostname": socket.gethostname(), "pid": os.getpid(),
                "python": sys.version.split()[0],
                "environment": {k: os.environ[k] for k in INHERITED if k in os.environ}}

    return await _in_thread(work, limit, "survey")


async def run_on_worker(scenario: Scenario, timeout: float, hang_timeout: float,
                        limit: float) -> dict[str, Any]:
    """One scenario in a supervised subprocess on this worker's host."""

    def work() -> dict[str, Any]:
        (result,) = run_many([scenario], timeout=timeout, hang_timeout=hang_timeout)
        return {"status": runner.OK, "result": result}

    return await _in_thread(work, limit, scenario.label)


async def follow_up_on_worker(failures: list[Failure], timeout: float, hang_timeout: float,
                              jobs: int, budget: float | None, limit: float) -> dict[str, Any]:
    """Minimise each failure and re-run it with each mitigation, here; the failures done by
    `limit` come back (in order), with status "hang" if some are not."""
    done: list[Failure] = []
    started = time.monotonic()

    def work() -> dict[str, Any]:
        for failure in failures:
            left = None if budget is None else budget - (time.monotonic() - started)
            done.append(minimize_and_mitigate(failure, timeout=timeout,
                                              hang_timeout=hang_timeout, jobs=jobs,
                                              budget=left))
        return {"status": runner.OK, "failures": list(done)}

    answer = await _in_thread(work, limit, "follow-up")
    if answer.get("status") != runner.OK:
        answer["failures"] = list(done)
    return answer


async def _in_thread(work: Callable[[], dict[str, Any]], limit: float,
                     what: str) -> dict[str, Any]:
    """`work()` in a daemon thread while the worker's event loop stays free; its answer, or
    {"status": "hang", "stack": ...} if it has not finished within `limit` seconds."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    box: dict[str, Any] = {}
    started = time.monotonic()

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc
        finally:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the worker's loop closed meanwhile: nobody is waiting
                pass

    thread = threading.Thread(target=target, name="numdoctor-fleet-probe", daemon=True)
    thread.start()
    try:
        await asyncio.wait_for(asyncio.shield(finished), limit)
    except (asyncio.TimeoutError, TimeoutError):
        return {"status": runner.HANG, "stack": _stack_of(thread),
                "seconds": round(time.monotonic() - started, 3),
                "error": f"the probe's {what} did not finish within {limit:g} s on this "
                         "worker; its thread is still running"}
    if "error" in box:
        raise box["error"]
    return box["value"]


def _stack_of(thread: threading.Thread) -> str:
    from numdoctor.redact import clip_tail

    frame = sys._current_frames().get(thread.ident or -1)
    return clip_tail("".join(traceback.format_stack(frame)), 4000) if frame is not None else ""


def _tops(modules: Sequence[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}
