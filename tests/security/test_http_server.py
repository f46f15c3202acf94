"""The server as an attacker reaches it without nginx: `agora serve`'s own uvicorn options
(runtime/http_server.py) on a real port, raw sockets for what no polite client sends.
Request heads are bounded (431), no `server:` header, the Host header never comes back
in a redirect; gRPC never names our library's classes; data files are private."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agora.core.settings import Settings
from agora.runtime.http_server import MAX_HEADER_COUNT, uvicorn_options
from tests.security.support import Agora, running_agora
from tests.support.grpc_servers import bearer, running_auth
from tests.support.http_server import serving
from tests.support.settings import make_settings
from tests.support.users import register_and_login

MAX_HEADER_BYTES = 16_384


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Agora, str]]:
    async with running_agora(tmp_path, max_header_bytes=MAX_HEADER_BYTES) as agora:
        options = {**uvicorn_options(agora.settings), "log_level": "warning"}
        async with serving(agora.app, **options) as url:
            yield agora, url


async def raw(url: str, head: bytes, chunk: int = 65_536) -> bytes:
    """Sends `head` as is (in chunks, as a slow client would) while reading the answer,
    which may come (and the connection close) before everything is sent."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = asyncio.create_task(reader.read(65_536))
    try:
        for start in range(0, len(head), chunk):
            if answer.done():
                break
            writer.write(head[start : start + chunk])
            try:
                await writer.drain()
            except ConnectionError:
                break  # refused mid-way: the answer is already there
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


def request(*headers: bytes, path: bytes = b"/api/publications") -> bytes:
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: testserver", *headers, b"", b""]
    return b"\r\n".join(lines)


async def test_request_heads_are_bounded_with_431(served: tuple[Agora, str]) -> None:
    _, url = served
    fine = request(*[b"X-Fill-%d: %s" % (n, b"a" * 100) for n in range(50)])
    assert (await raw(url, fine)).startswith(b"HTTP/1.1 401 ")  # reaches the app
    for head in (
        request(b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 1)),  # one header too large
        request(b"X-Big: " + b"a" * 64 * 1024 * 1024),  # the 64 MB header
        request(path=b"/" + b"a" * (MAX_HEADER_BYTES + 1)),  # the request line
        request(*[b"X-N-%d: 1" % n for n in range(MAX_HEADER_COUNT + 1)]),  # too many
    ):
        answer = await raw(url, head)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    # The server still serves after refusing.
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/publications")).status_code == 401


async def test_no_server_header_and_no_host_in_redirects(served: tuple[Agora, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url) as client:
        answers = [
            await client.get(path, headers={"Host": "evil.example"})
            for path in ("/api/publications/", "/auth/api/me/", "/api/v1/conversations/", "/x/")
        ]
    for answer in answers:
        assert "server" not in answer.headers
        assert "evil.example" not in answer.headers.get("location", "")
        assert answer.status_code in (401, 404), answer.status_code


async def test_a_malformed_grpc_request_names_no_class(tmp_path: Path, database_url: str) -> None:
    async with running_auth(make_settings(tmp_path, database_url=database_url)) as running:
        _, token = await register_and_login(running.http)
        for method in ("GetUser", "BatchGetUsers"):
            call = running.channel.unary_unary(f"/agora.auth.v1.UserService/{method}")
            for metadata in (bearer(token), ()):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(b"\xff\xff\xff not protobuf", metadata=metadata, timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert caught.value.details() == "Malformed request"


def modes(path: Path) -> dict[str, int]:
    return {
        str(p.relative_to(path)): stat.S_IMODE(p.stat().st_mode)
        for p in [path, *path.rglob("*")]
        if not p.is_symlink()
    }


def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    """`agora serve`'s start: the directory 0700, the SQLite file, its WAL and the dev
    secret 0600, also when they were made before with looser modes."""
    from agora.runtime.data_dir import private_data_dir

    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    (data / "agora.db").write_bytes(b"")
    (data / "agora.db").chmod(0o644)
    settings: Settings = make_settings(data, database_url="")
    previous = private_data_dir(settings)
    try:
        found: dict[str, Any] = modes(data)
        assert found["."] == 0o700 and found["agora.db"] == 0o600
        # What is created afterwards in the process is private too (umask 077).
        (data / "agora.db-wal").write_bytes(b"")
        (data / "media").mkdir()
        found = modes(data)
        assert found["agora.db-wal"] == 0o600 and found["media"] == 0o700
    finally:
        os.umask(previous)
