"""Run a function on cluster members under a deadline, through Dask's own out-of-band calls.

`client.run` waits for every worker, so one worker frozen in C code would block it forever.
Here each worker gets its own `Client._run(..., workers=[address])` coroutine on the client's
event loop, bounded by `asyncio.wait_for`; a worker that does not answer in time is reported
as hung and its coroutine is cancelled, so nothing in *this* process keeps waiting on it.
(The scheduler's side of the broadcast keeps a socket open to the frozen worker until Dask
removes it; nothing here can cancel that, and it costs nothing but the socket.)

Every call resolves to a `MemberResult`, never an exception, so a caller can report a whole
cluster at once. `numdoctor fleet` collects snapshots with these primitives; `probe` can
spread its scenarios with them.
"""

from __future__ import annotations

import concurrent.futures
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# asyncio (20 ms to import) is only needed once a fleet command talks to a cluster: every
# `numdoctor check` loads this module's status names through the rules.
if TYPE_CHECKING:
    import asyncio

OK = "ok"
ERROR = "error"  # the function (or its unpickling) raised
HANG = "hang"  # no answer within the deadline
LOST = "lost"  # the connection to the member broke: it died or left the cluster

# How long after the per-member deadline the waiting thread gives up on the event loop itself
# (a coroutine that cannot even be cancelled means the client's loop is stuck).
_LOOP_GRACE = 5.0
# Members asked at once. Dask's client keeps at most 512 connections; a call waiting for one
# would spend its deadline in the queue, so larger clusters are asked in batches, each call's
# deadline starting when it is sent.
CONCURRENT_CALLS = 256


@dataclass
class MemberResult:
    """What came back from one member: a value, or why there is none."""

    address: str
    status: str
    value: Any = None
    error: str = ""  # one line: exception type and message
    traceback: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK


Progress = Callable[[MemberResult], None]


def require_sync_client(client: Any) -> None:
    if getattr(client, "asynchronous", False):
        raise TypeError("numdoctor.fleet needs a synchronous distributed.Client (this one was "
                        "created with asynchronous=True)")
    if getattr(client, "status", "running") not in ("running", "connecting"):
        raise ValueError(f"the distributed.Client is {client.status}, not running")


def start_on_workers(
    client: Any,
    fn: Callable[..., Any],
    *,
    timeout: float,
    workers: Iterable[str],
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
) -> dict[str, concurrent.futures.Future[MemberResult]]:
    """Start `fn(*args, **kwargs)` on each worker (in the worker process, like `client.run`).

    Returns at once; each future resolves to a MemberResult within about `timeout` seconds.
    `fn` may be a coroutine function: it then runs on the worker's event loop, which keeps
    the worker responsive while it waits.
    """
    import asyncio

    loop = client.loop.asyncio_loop
    slots = asyncio.Semaphore(CONCURRENT_CALLS)
    futures = {}
    for address in workers:
        call = _on_worker(client, fn, address, args, dict(kwargs or {}), timeout, slots)
        futures[address] = asyncio.run_coroutine_threadsafe(call, loop)
    return futures


def start_on_scheduler(
    client: Any,
    fn: Callable[..., Any],
    *,
    timeout: float,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
) -> concurrent.futures.Future[MemberResult]:
    """Start `fn` in the scheduler process (like `client.run_on_scheduler`)."""
    import asyncio

    call = _on_scheduler(client, fn, args, dict(kwargs or {}), timeout)
    return asyncio.run_coroutine_threadsafe(call, client.loop.asyncio_loop)


def wait_all(
    futures: Mapping[str, concurrent.futures.Future[MemberResult]],
    *,
    timeout: float,
    progress: Progress | None = None,
) -> dict[str, MemberResult]:
    """Collect the futures from `start_on_*`, calling `progress` as each one finishes."""
    results: dict[str, MemberResult] = {}
    by_future = {future: address for address, future in futures.items()}
    batches = -(-len(futures) // CONCURRENT_CALLS)
    try:
        for future in concurrent.futures.as_completed(
                by_future, timeout=timeout * max(1, batches) + _LOOP_GRACE):
            address = by_future[future]
            results[address] = _result_of(future, address)
            if progress is not None:
                progress(results[address])
    except concurrent.futures.TimeoutError:
        pass
    for future, address in by_future.items():
        if address not in results:
            future.cancel()
            results[address] = MemberResult(
                address, HANG, error=f"no answer within {timeout:g} s (the client's event "
                                     "loop did not respond either)", seconds=timeout)
            if progress is not None:
                progress(results[address])
    return {address: results[address] for address in futures}


def run_on_workers(
    client: Any,
    fn: Callable[..., Any],
    *,
    timeout: float,
    workers: Iterable[str] | None = None,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, MemberResult]:
    """`fn` on every worker (or those named), each bounded by `timeout`; never waits longer.

    Results are keyed by worker address, in the scheduler's order.
    """
    require_sync_client(client)
    if workers is None:
        workers = list(scheduler_identity(client, timeout=timeout).get("workers", {}))
    futures = start_on_workers(client, fn, timeout=timeout, workers=workers, args=args,
                               kwargs=kwargs)
    return wait_all(futures, timeout=timeout, progress=progress)


def run_on_scheduler(
    client: Any,
    fn: Callable[..., Any],
    *,
    timeout: float,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
) -> MemberResult:
    require_sync_client(client)
    future = start_on_scheduler(client, fn, timeout=timeout, args=args, kwargs=kwargs)
    address = scheduler_address(client)
    return wait_all({address: future}, timeout=timeout)[address]


def scheduler_identity(client: Any, *, timeout: float) -> dict[str, Any]:
    """The scheduler's `identity()` with every worker, or raise TimeoutError/OSError."""
    import asyncio

    async def identity() -> dict[str, Any]:
        try:
            return await client.scheduler.identity(n_workers=-1)
        except TypeError:  # distributed before n_workers existed lists every worker anyway
            return await client.scheduler.identity()

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(identity(), timeout)

    future = asyncio.run_coroutine_threadsafe(bounded(), client.loop.asyncio_loop)
    try:
        return future.result(timeout + _LOOP_GRACE)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"the scheduler did not answer within {timeout:g} s") from None


# -- the coroutines (they run on the client's event loop) ------------------------------------

async def _on_worker(client: Any, fn: Callable[..., Any], address: str, args: tuple,
                     kwargs: dict[str, Any], timeout: float,
                     slots: asyncio.Semaphore) -> MemberResult:
    async with slots:
        return await _call_worker(client, fn, address, args, kwargs, timeout)


async def _call_worker(client: Any, fn: Callable[..., Any], address: str, args: tuple,
                       kwargs: dict[str, Any], timeout: float) -> MemberResult:
    import asyncio

    start = time.monotonic()
    try:
        answers = await asyncio.wait_for(
            client._run(fn, *args, workers=[address], on_error="return", **kwargs), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return MemberResult(address, HANG, error=f"no answer within {timeout:g} s",
                            seconds=round(time.monotonic() - start, 3))
    except Exception as exc:  # the scheduler could not be asked at all
        return _failure(address, exc, start)
    if address not in answers:
        return MemberResult(address, LOST, error="the scheduler did not reach this worker",
                            seconds=round(time.monotonic() - start, 3))
    answer = answers[address]
    if isinstance(answer, BaseException):
        return _failure(address, answer, start)
    return MemberResult(address, OK, value=answer, seconds=round(time.monotonic() - start, 3))


async def _on_scheduler(client: Any, fn: Callable[..., Any], args: tuple,
                        kwargs: dict[str, Any], timeout: float) -> MemberResult:
    import asyncio

    address = scheduler_address(client)
    start = time.monotonic()
    try:
        value = await asyncio.wait_for(client._run_on_scheduler(fn, *args, **kwargs), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return MemberResult(address, HANG, error=f"no answer within {timeout:g} s",
                            seconds=round(time.monotonic() - start, 3))
    except Exception as exc:
        return _failure(address, exc, start)
    return MemberResult(address, OK, value=value, seconds=round(time.monotonic() - start, 3))


def _failure(address: str, exc: BaseException, start: float) -> MemberResult:
    # Dask's CommClosedError and StreamClosedError are OSErrors, as is "connection refused":
    # the member went away. Anything else was raised by the function or while unpickling it.
    status = LOST if isinstance(exc, OSError) else ERROR
    from numdoctor.redact import clip_tail

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return MemberResult(address, status, error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                        traceback=clip_tail(text, 4000),
                        seconds=round(time.monotonic() - start, 3))


def _result_of(future: concurrent.futures.Future[MemberResult], address: str) -> MemberResult:
    try:
        return future.result()
    except BaseException as exc:  # the coroutine itself failed: a bug, but report it
        return MemberResult(address, ERROR, error=f"{type(exc).__name__}: {exc}")


def scheduler_address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except AttributeError:
        return "scheduler"
