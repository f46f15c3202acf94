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


def tcp_table() -> list[TcpEntry]:
    """Every IPv4 TCP socket of this machine (loopback included), from /proc/net/tcp."""
    path = Path("/proc/net/tcp")
    if not path.exists():
        pytest.skip("no /proc/net/tcp (Linux only)")
    entries = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        entries.append(TcpEntry(int(local.split(":")[1], 16), int(remote.split(":")[1], 16), state))
    return entries


def server_side(port: int, peer_port: int) -> list[str]:
    """States of the sockets on `port` whose peer is `peer_port` (the server's end)."""
    return [
        STATES.get(entry.state, entry.state)
        for entry in tcp_table()
        if entry.local_port == port and entry.remote_port == peer_port
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
        self.local_port: int = self.sock.getsockname()[1]
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
        return server_side(self.port, self.local_port)

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
