"""What a file descriptor is, and which process holds its other end.

A pipe's other end is any process holding the same pipe inode open for the other direction
(fdinfo's access mode says which end an fd is). A Unix socket's peer is asked of the kernel
(sock_diag); a TCP socket's peer is the socket with the swapped addresses. The holders are
looked for in the tree first; only when the tree has none are the other processes of the
machine searched (a server, the shell that feeds stdin), once per collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from numdoctor.core.waits.model import Endpoint
from numdoctor.core.waits.procfs import fd_access, fd_targets, read_text
from numdoctor.core.waits.sockets import (
    TcpSocket,
    listener_for,
    socket_inodes_of,
    tcp_sockets,
    unix_peer,
)

_READ, _WRITE, _BOTH = 0, 1, 2


def _inode(target: str, prefix: str) -> int | None:
    if target.startswith(prefix) and target.endswith("]"):
        try:
            return int(target[len(prefix):-1])
        except ValueError:
            return None
    return None


@dataclass
class TreeFds:
    """The fds of every process of the tree, indexed by pipe and socket inode."""

    pids: list[int]
    targets: dict[int, dict[int, str]] = field(default_factory=dict)  # pid -> fd -> target
    pipes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # inode -> holders
    sockets: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    _outside_sockets: dict[int, list[tuple[int, int]]] | None = None
    _outside_pipes: dict[int, list[tuple[int, int]]] | None = None
    _tcp: dict[int, dict[int, TcpSocket]] = field(default_factory=dict)

    @classmethod
    def read(cls, pids: list[int]) -> TreeFds:
        index = cls(list(pids))
        for pid in pids:
            targets = fd_targets(pid)
            index.targets[pid] = targets
            for fd, target in targets.items():
                pipe = _inode(target, "pipe:[")
                if pipe is not None:
                    index.pipes.setdefault(pipe, []).append((pid, fd))
                    continue
                sock = _inode(target, "socket:[")
                if sock is not None:
                    index.sockets.setdefault(sock, []).append((pid, fd))
        return index

    def tcp(self, pid: int) -> dict[int, TcpSocket]:
        if pid not in self._tcp:
            self._tcp[pid] = tcp_sockets(pid)
        return self._tcp[pid]

    def outside_sockets(self) -> dict[int, list[tuple[int, int]]]:
        if self._outside_sockets is None:
            others = [int(n) for n in os.listdir("/proc")
                      if n.isdigit() and int(n) not in self.targets]
            self._outside_sockets = socket_inodes_of(others)
        return self._outside_sockets

    def outside_pipes(self) -> dict[int, list[tuple[int, int]]]:
        if self._outside_pipes is None:
            found: dict[int, list[tuple[int, int]]] = {}
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) in self.targets:
                    continue
                for fd, target in fd_targets(int(name)).items():
                    inode = _inode(target, "pipe:[")
                    if inode is not None:
                        found.setdefault(inode, []).append((int(name), fd))
            self._outside_pipes = found
        return self._outside_pipes


def _command(pid: int) -> str:
    raw = read_text(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
    return (raw if len(raw) <= 60 else raw[:59] + "…") or read_text(f"/proc/{pid}/comm").strip()


def _outside(holders: list[tuple[int, int]], what: str) -> str:
    pids = sorted({pid for pid, _ in holders})
    shown = ", ".join(f"pid {pid} ({_command(pid)})" for pid in pids[:3])
    return f"{what} {shown} (outside the tree)"


def resolve(pid: int, fd: int, index: TreeFds) -> Endpoint:
    """The Endpoint of `pid`'s fd `fd`."""
    target = index.targets.get(pid, {}).get(fd)
    if target is None:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return Endpoint(fd=fd, kind="other", text="(closed)")
    pipe = _inode(target, "pipe:[")
    if pipe is not None:
        return _pipe(pid, fd, pipe, target, index)
    sock = _inode(target, "socket:[")
    if sock is not None:
        return _socket(pid, fd, sock, target, index)
    if target.startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
        return Endpoint(fd=fd, kind="tty", text=target, peer_outside=f"terminal {target}")
    if target.startswith("anon_inode:"):
        kind = target[len("anon_inode:"):].strip("[]")
        return Endpoint(fd=fd, kind="eventfd" if kind == "eventfd" else
                        "epoll" if kind == "eventpoll" else "other", text=target)
    return Endpoint(fd=fd, kind="file", text=target)


def _pipe(pid: int, fd: int, inode: int, target: str, index: TreeFds) -> Endpoint:
    mine = fd_access(pid, fd)
    wanted = {_WRITE, _BOTH} if mine in (_READ, None) else {_READ, _BOTH}
    end = "read" if mine == _READ else "write" if mine == _WRITE else ""
    text = f"{target} ({end} end)" if end else target
    peers = [(p, f) for p, f in index.pipes.get(inode, [])
             if (p, f) != (pid, fd) and fd_access(p, f) in wanted]
    endpoint = Endpoint(fd=fd, kind="pipe", inode=inode, text=text, peers=peers)
    if not peers:
        outside = [(p, f) for p, f in index.outside_pipes().get(inode, [])
                   if fd_access(p, f) in wanted]
        if outside:
            endpoint.peer_outside = _outside(outside, "held by")
        else:
            endpoint.peer_gone = True
    return endpoint


def _socket(pid: int, fd: int, inode: int, target: str, index: TreeFds) -> Endpoint:
    tcp = index.tcp(pid).get(inode)
    if tcp is not None:
        return _tcp(pid, fd, tcp, index)
    peer = unix_peer(inode)
    if peer is None:
        return Endpoint(fd=fd, kind="other", inode=inode, text=target,
                        peer_outside="peer unknown")
    text = f"unix {target}" + (f" bound to {peer.name}" if peer.name else "")
    endpoint = Endpoint(fd=fd, kind="unix", inode=inode, text=text)
    if peer.peer is None:
        # A listening socket has no peer either: accept() waits for a client.
        endpoint.peer_gone = not peer.name
        if peer.name:
            endpoint.peer_outside = f"clients connecting to {peer.name}"
        return endpoint
    endpoint.peers = [h for h in index.sockets.get(peer.peer, []) if h != (pid, fd)]
    if not endpoint.peers:
        outside = index.outside_sockets().get(peer.peer, [])
        endpoint.peer_outside = (_outside(outside, "held by") if outside
                                 else f"socket:[{peer.peer}] (no process holds it)")
    return endpoint


def _tcp(pid: int, fd: int, sock: TcpSocket, index: TreeFds) -> Endpoint:
    endpoint = Endpoint(fd=fd, kind="tcp", inode=sock.inode,
                        text=f"tcp {sock.describe()} ({sock.state})")
    if sock.state == "LISTEN":
        endpoint.text = f"tcp listening on {sock.local[0]}:{sock.local[1]}"
        endpoint.peer_outside = "clients connecting to it"
        return endpoint
    if sock.state in ("CLOSE_WAIT", "LAST_ACK", "CLOSE", "TIME_WAIT"):
        endpoint.peer_gone = True
    table = index.tcp(pid)
    twin = next((s for s in table.values()
                 if s.local == sock.remote and s.remote == sock.local), None)
    if twin is not None and twin.inode:
        endpoint.peers = [h for h in index.sockets.get(twin.inode, []) if h != (pid, fd)]
        if endpoint.peers:
            return endpoint
        outside = index.outside_sockets().get(twin.inode, [])
        if outside:
            endpoint.peer_outside = _outside(outside, "held by")
            return endpoint
    listener = listener_for(table, sock.remote)
    if listener is not None and not endpoint.peer_gone:
        # The kernel completed the handshake, but no process holds the server's end: it
        # waits in the listener's queue until the server calls accept().
        holders = index.sockets.get(listener.inode) or index.outside_sockets().get(
            listener.inode, [])
        if holders:
            inside = [h for h in holders if h[0] in index.targets]
            if inside:
                endpoint.peers = inside
            else:
                endpoint.peer_outside = _outside(holders, "listening socket of")
            endpoint.text += "; the server has not accepted the connection"
            return endpoint
    host, port = sock.remote
    endpoint.peer_outside = f"remote {host}:{port}"
    return endpoint
