"""Who is at the other end of a socket: TCP from /proc/net/tcp{,6}, Unix sockets from the
kernel's sock_diag netlink interface (what `ss -xp` uses)."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from numdoctor.core.waits.procfs import read_text

_TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
    "0A": "LISTEN", "0B": "CLOSING",
}


@dataclass(frozen=True)
class TcpSocket:
    inode: int
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # "ESTABLISHED", "LISTEN", "CLOSE_WAIT", ...

    def describe(self) -> str:
        return f"{_address(self.local)} -> {_address(self.remote)}"


def _address(pair: tuple[str, int]) -> str:
    host, port = pair
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _decode(text: str) -> tuple[str, int]:
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word in host byte order.
    words = b"".join(struct.pack("=I", struct.unpack(">I", raw[i:i + 4])[0])
                     for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address), int(port, 16)


def tcp_sockets(pid: int) -> dict[int, TcpSocket]:
    """Every TCP socket of `pid`'s network namespace, by inode."""
    found: dict[int, TcpSocket] = {}
    for name in ("tcp", "tcp6"):
        for line in read_text(f"/proc/{pid}/net/{name}").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10:
                continue
            try:
                inode = int(fields[9])
                found.setdefault(inode, TcpSocket(inode, _decode(fields[1]), _decode(fields[2]),
                                                  _TCP_STATES.get(fields[3], fields[3])))
            except ValueError:
                continue
    return found


def listener_for(sockets: dict[int, TcpSocket], remote: tuple[str, int]) -> TcpSocket | None:
    """The listening socket that accepted (or will accept) a connection to `remote`."""
    host, port = remote
    for candidate in sockets.values():
        if candidate.state != "LISTEN" or candidate.local[1] != port:
            continue
        if candidate.local[0] in (host, "0.0.0.0", "::"):
            return candidate
    return None


# -- Unix sockets: sock_diag -----------------------------------------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_PEER = 0x04
UNIX_DIAG_NAME = 0
UNIX_DIAG_PEER = 2
_NOCOOKIE = 0xFFFFFFFF


@dataclass(frozen=True)
class UnixPeer:
    inode: int
    peer: int | None  # the peer socket's inode; None when it has none (closed, unconnected)
    name: str = ""  # the path (or "@abstract") the socket is bound to


def unix_peer(inode: int) -> UnixPeer | None:
    """The peer of Unix socket `inode`, asked of the kernel; None when the kernel cannot say
    (no sock_diag support, another network namespace, the socket is gone)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except OSError:
        return None
    try:
        sock.settimeout(0.5)
        request = struct.pack("=BBHIII2I", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode,
                              UDIAG_SHOW_PEER | UDIAG_SHOW_NAME, _NOCOOKIE, _NOCOOKIE)
        header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                             1, 0)
        sock.sendto(header + request, (0, 0))
        data = sock.recv(65536)
    except OSError:
        return None
    finally:
        sock.close()
    return _parse_unix_reply(data, inode)


def _parse_unix_reply(data: bytes, inode: int) -> UnixPeer | None:
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return None
        body = data[offset + 16: offset + length]
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
            if code == errno.ENOENT:
                return UnixPeer(inode, None)
            return None
        if kind == SOCK_DIAG_BY_FAMILY and len(body) >= 16:
            _family, _type, _state, _pad, found = struct.unpack_from("=BBBBI", body)
            peer: int | None = None
            name = ""
            at = 16
            while at + 4 <= len(body):
                attr_len, attr_type = struct.unpack_from("=HH", body, at)
                if attr_len < 4:
                    break
                value = body[at + 4: at + attr_len]
                if attr_type == UNIX_DIAG_PEER and len(value) >= 4:
                    peer = struct.unpack_from("=I", value)[0] or None
                elif attr_type == UNIX_DIAG_NAME and value:
                    name = ("@" + value[1:].decode("utf-8", "replace").rstrip("\0")
                            if value[:1] == b"\0" else value.decode("utf-8", "replace")
                            .rstrip("\0"))
                at += (attr_len + 3) & ~3
            if found == inode:
                return UnixPeer(found, peer, name)
        offset += (length + 3) & ~3
    return None


def socket_inodes_of(pids: list[int] | None = None) -> dict[int, list[tuple[int, int]]]:
    """{socket inode: [(pid, fd), ...]} over `pids` (every process we can see when None)."""
    if pids is None:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    holders: dict[int, list[tuple[int, int]]] = {}
    for pid in pids:
        base = f"/proc/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{base}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                holders.setdefault(int(target[8:-1]), []).append((pid, int(name)))
    return holders
