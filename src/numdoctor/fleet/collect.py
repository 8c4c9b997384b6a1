"""Gather facts from every member of a Dask cluster: each worker, the scheduler, the client.

Workers and the scheduler are asked through Dask's out-of-band calls (see `runner`), all at
once, each under the same deadline; the client collects locally meanwhile. The result says
for each member what came back, or that it failed, hung or was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from numdoctor.fleet import runner
from numdoctor.fleet.remote import Collection, collect_member, identity
from numdoctor.snapshot.model import Snapshot

WORKER, SCHEDULER, CLIENT = "worker", "scheduler", "client"

Progress = Callable[[dict], None]


@dataclass
class MemberFacts:
    """One member of the cluster and what numdoctor found out about it."""

    role: str  # worker, scheduler or client
    address: str  # "" for the client
    name: str = ""  # the Dask worker name, when it has one other than its address
    host: str = ""  # as Dask knows it (an IP address, usually)
    hostname: str = ""  # as the member's machine calls itself
    status: str = runner.OK  # ok, error, hang, lost (see runner)
    seconds: float = 0.0
    error: str = ""
    detail: str = ""  # traceback of an error, or where a hung collection was stuck
    pid: int | None = None
    python: str = ""
    nthreads: int | None = None  # Dask threads of a worker
    numdoctor_version: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    snapshot: Snapshot | None = None

    @property
    def label(self) -> str:
        return self.role if self.role == CLIENT else f"{self.role} {self.address}"

    @property
    def ok(self) -> bool:
        return self.status == runner.OK and self.snapshot is not None

    @property
    def machine(self) -> str:
        """The host for people: "node7 (10.0.0.7)", or whichever of the two is known."""
        if self.hostname and self.host and self.hostname != self.host:
            return f"{self.hostname} ({self.host})"
        return self.hostname or self.host

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role, "address": self.address, "name": self.name, "host": self.host,
            "hostname": self.hostname,
            "status": self.status, "seconds": self.seconds, "error": self.error,
            "detail": self.detail, "pid": self.pid, "python": self.python,
            "nthreads": self.nthreads, "numdoctor_version": self.numdoctor_version,
            "packages": self.packages,
            "snapshot": self.snapshot.to_dict() if self.snapshot is not None else None,
        }


@dataclass
class FleetFacts:
    scheduler_address: str
    members: list[MemberFacts]
    imports: list[str] | None
    timeout: float
    seconds: float = 0.0

    @property
    def workers(self) -> list[MemberFacts]:
        return [m for m in self.members if m.role == WORKER]

    def member(self, role: str) -> MemberFacts | None:
        return next((m for m in self.members if m.role == role), None)


def member_deadline(timeout: float) -> float:
    """The deadline a member sets itself: early enough that its answer beats the client's."""
    return max(timeout * 0.5, timeout - max(1.0, min(5.0, timeout * 0.2)))


def import_timeout(timeout: float) -> float:
    """Per-import limit with --import, so one hung import still leaves time to report it."""
    return max(1.0, member_deadline(timeout) / 2)


def collect_fleet(client: Any, *, imports: list[str] | None = None, timeout: float = 120.0,
                  progress: Progress | None = None) -> FleetFacts:
    """Ask every worker, the scheduler and the client for their facts; never takes much more
    than `timeout` seconds."""
    runner.require_sync_client(client)
    started = time.monotonic()
    cluster = runner.scheduler_identity(client, timeout=timeout)
    scheduler_address = str(cluster.get("address") or runner.scheduler_address(client))
    worker_info: dict[str, dict[str, Any]] = dict(cluster.get("workers") or {})
    if progress is not None:
        progress({"event": "start", "total": len(worker_info) + 2,
                  "workers": len(worker_info)})

    modules = list(imports) if imports is not None else None
    deadline, per_import = member_deadline(timeout), import_timeout(timeout)
    call_args = (modules, deadline, per_import)
    futures = runner.start_on_workers(client, collect_member, timeout=timeout,
                                      workers=list(worker_info), args=call_args)
    futures[scheduler_address] = runner.start_on_scheduler(
        client, collect_member, timeout=timeout, args=call_args)
    # The client's own facts are gathered meanwhile, under the same deadline.
    local = Collection(modules, per_import, deadline).start()

    def report(result: runner.MemberResult) -> None:
        if progress is None:
            return
        role = SCHEDULER if result.address == scheduler_address else WORKER
        progress({"event": "member", "label": f"{role} {result.address}",
                  "status": result.status})

    results = runner.wait_all(futures, timeout=timeout, progress=report)
    members = [_member(WORKER, address, results[address], worker_info.get(address, {}))
               for address in worker_info]
    members.append(_member(SCHEDULER, scheduler_address, results[scheduler_address], {}))
    payload = local.wait()
    payload.update(identity())
    members.append(_member(CLIENT, "", runner.MemberResult("client", runner.OK, payload,
                                                           seconds=payload["seconds"]), {}))
    if progress is not None:
        progress({"event": "member", "label": CLIENT, "status": members[-1].status})
    _mark_departed(client, members, timeout)
    return FleetFacts(scheduler_address=scheduler_address, members=members, imports=modules,
                      timeout=timeout, seconds=round(time.monotonic() - started, 3))


def _member(role: str, address: str, result: runner.MemberResult,
            info: dict[str, Any]) -> MemberFacts:
    name = str(info.get("name", ""))
    member = MemberFacts(role=role, address=address, name="" if name == address else name,
                         host=str(info.get("host") or _address_host(address)) if address
                         else "",
                         status=result.status, seconds=result.seconds,
                         nthreads=info.get("nthreads"))
    if not result.ok:
        member.error = result.error
        member.detail = result.traceback
        return member
    payload = result.value if isinstance(result.value, dict) else {}
    member.pid = payload.get("pid")
    member.python = str(payload.get("python", ""))
    member.hostname = str(payload.get("host", ""))
    if isinstance(payload.get("nthreads"), int):
        member.nthreads = payload["nthreads"]
    status = payload.get("status")
    if status == "hang":
        member.status = runner.HANG
        member.error = str(payload.get("error", ""))
        member.detail = str(payload.get("stack", ""))
    elif status == "error":
        member.status = runner.ERROR
        member.error = str(payload.get("error", ""))
        member.detail = str(payload.get("traceback", ""))
    else:
        _fill(member, payload)
    return member


def _address_host(address: str) -> str:
    """"tcp://10.0.0.7:8786" -> "10.0.0.7" (IPv6 in brackets too)."""
    location = address.split("://", 1)[-1]
    host = location.rsplit(":", 1)[0] if ":" in location else location
    return host.strip("[]")


def _fill(member: MemberFacts, payload: dict[str, Any]) -> None:
    member.numdoctor_version = str(payload.get("numdoctor_version", ""))
    member.packages = dict(payload.get("packages") or {})
    try:
        member.snapshot = Snapshot.from_dict(payload["snapshot"])
    except (KeyError, TypeError, ValueError) as exc:
        # Typically a different numdoctor on the member writing another snapshot schema.
        member.status = runner.ERROR
        member.error = (f"its snapshot cannot be read: {exc} (numdoctor "
                        f"{member.numdoctor_version or '?'} there)")


def _mark_departed(client: Any, members: list[MemberFacts], timeout: float) -> None:
    """A hung worker that the scheduler no longer lists has left the cluster: lost."""
    hung = [m for m in members if m.role == WORKER and m.status == runner.HANG]
    if not hung:
        return
    try:
        known = runner.scheduler_identity(client, timeout=min(timeout, 5.0)).get("workers", {})
    except (OSError, TimeoutError):
        return
    for member in hung:
        if member.address not in known and not member.detail:
            member.status = runner.LOST
            member.error += "; the scheduler no longer lists this worker"
