"""Connections as the kernel sees them: the TCP table of /proc/net/tcp, and a WebSocket
client that never reads (its receive window shut), for the connection fault tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

# /proc/net/tcp's `st` column.
ESTABLISHED = "01"
TIME_WAIT = "06"
STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "04": "FIN_WAIT1",
          "05": "FIN_WAIT2", "0B": "CLOSING", "09": "LAST_ACK"}  # fmt: skip


@dataclass(frozen=True)
class TcpEntry:
    local_port: int
    remote_port: int
    state: str
    local_address: str = ""  # dotted IPv4
    remote_address: str = ""


def _address(hex_address: str) -> str:
    """/proc/net/tcp writes an IPv4 address as 8 hex digits in the host's byte order."""
    return socket.inet_ntoa(int(hex_address, 16).to_bytes(4, "little"))


def tcp_table() -> list[TcpEntry]:
    """Every IPv4 TCP socket of this machine (loopback included), from /proc/net/tcp."""
    path = Path("/proc/net/tcp")
    if not path.exists():
        pytest.skip("no /proc/net/tcp (Linux only)")
    entries = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1].split(":"), fields[2].split(":"), fields[3]
        entries.append(
            TcpEntry(int(local[1], 16), int(remote[1], 16), state,
                     _address(local[0]), _address(remote[0]))
        )  # fmt: skip
    return entries


def server_side(server: tuple[str, int], peer: tuple[str, int]) -> list[str]:
    """States of the server's end of the connection between `server` and `peer`
    (address, port): the whole four, as the ports alone may match connections of other
    loopback addresses (seen once in CI: three ESTABLISHED for one connection)."""
    return [
        STATES.get(entry.state, entry.state)
        for entry in tcp_table()
        if (entry.local_address, entry.local_port) == server
        and (entry.remote_address, entry.remote_port) == peer
    ]


class DeafSocket:
    """A WebSocket client that completes the handshake, then never reads a byte: a tiny
    receive buffer, so the server's frames pile up in the server's kernel and transport."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.port = port
        self.local: tuple[str, int] = self.sock.getsockname()[:2]
        self.server: tuple[str, int] = self.sock.getpeername()[:2]
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:  # the 101 only, byte by byte: nothing more is read
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        self.status_line = head.split(b"\r\n", 1)[0].decode()

    def server_states(self) -> list[str]:
        return server_side(self.server, self.local)

    def read_to_end(self) -> str:
        """Read what reached this end, then: "reset", "eof", or "open" (still open)."""
        self.sock.settimeout(5)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except TimeoutError:
            return "open"
        return "eof"

    def close(self) -> None:
        self.sock.close()
