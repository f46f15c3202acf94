"""A process killed mid-upload leaves its `.part` file; the next start removes the
orphans (issue 15 §6): real `agora serve` processes, SIGKILLed during a real upload."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from agora.adapters.media_disk import STALE_PART_SECONDS
from tests.e2e.agora_command import Server, agora_env, login, register

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 17


def start_upload(server: Server, token: str, size: int) -> socket.socket:
    """A multipart upload of a `size`-byte PNG whose first 64 KiB only are sent."""
    boundary = "agoraboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + size + len(tail)
    request = (
        f"POST /api/v1/media HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    first = PNG + b"\x00" * (65536 - len(PNG))
    sock.sendall(request + head + first)
    return sock


def parts(media_dir: Path) -> list[Path]:
    return sorted(media_dir.glob("*/.*.part"))


def test_an_upload_killed_midway_leaves_no_part_file_after_the_next_start(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, agora_env(tmp_path)).start()
    media_dir = tmp_path / "media"
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            user = register(client)
            token = login(client, user["login"])
        upload = start_upload(server, token, 5_000_000)
        deadline = time.monotonic() + 15
        while not parts(media_dir):
            assert time.monotonic() < deadline, f"no .part file appeared:\n{server.log()}"
            time.sleep(0.05)
        server.kill()  # SIGKILL mid-upload
        upload.close()
        (orphan,) = parts(media_dir)
        # The orphan as the next start finds it once it is old enough; and a fresh part,
        # as another instance sharing the directory may be writing right now: kept.
        old = time.time() - STALE_PART_SECONDS - 60
        os.utime(orphan, (old, old))
        live = orphan.parent / ".0123456789abcdef0123456789abcdef.live.part"
        live.write_bytes(b"in progress elsewhere")
        server = Server(tmp_path, agora_env(tmp_path)).start()
        assert parts(media_dir) == [live]
        assert "unfinished upload" in server.log()
    finally:
        server.kill()


def test_an_upload_that_goes_quiet_is_refused_408_and_leaves_nothing(tmp_path: Path) -> None:
    """Issue 15 §9: an upload straight to an instance (no nginx in front) that stops
    sending is answered 408 after AGORA_MEDIA_UPLOAD_IDLE_TIMEOUT, its part removed."""
    idle = 2.0
    server = Server(tmp_path, agora_env(tmp_path, AGORA_MEDIA_UPLOAD_IDLE_TIMEOUT=str(idle)))
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            user = register(client)
            token = login(client, user["login"])
        upload = start_upload(server, token, 5_000_000)
        started = time.monotonic()
        upload.settimeout(idle + 20)
        answer = upload.recv(65536)
        elapsed = time.monotonic() - started
        upload.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert idle <= elapsed + 0.5 and elapsed < idle + 10, elapsed
        assert parts(tmp_path / "media") == []
    finally:
        server.kill()
