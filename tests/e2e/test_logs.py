"""What `agora serve` writes on stderr, in each format: an access line per request and
per socket, uvicorn's lines in the same format, and no token, ticket or JWT anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.agora_command import Server, agora_env, login, register
from tests.support.services import require_redis

pytestmark = pytest.mark.e2e

CONSOLE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+  "
)
# A JWT's header in base64url; none may reach the log, redacted or not.
JWT_PREFIX = "eyJ"


def exercise(server: Server) -> dict[str, str]:
    """A 200, a 401 (forged token), two 404s, a refused and an accepted socket; returns
    the secrets that were sent, which the log must not hold."""
    secrets: dict[str, str] = {}
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        user = register(client)
        token = secrets["token"] = login(client, user["login"])
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/auth/api/me", headers=bearer).status_code == 200
        forged = secrets["forged"] = jwt.encode({"sub": user["id"]}, "not-the-key" * 4)
        me = client.get("/auth/api/me", headers={"Authorization": f"Bearer {forged}"})
        assert me.status_code == 401
        # a secret in a query string, and a path crafted to forge a line or paint a terminal
        secrets["query"] = "query-secret-0123456789"
        assert client.get(f"/no/such/path?token={secrets['query']}&page=2").status_code == 404
        assert client.get("/nowhere/%1b[31mred%0AINFO-forged").status_code == 404
        ticket = client.get("/social/api/socials/connect-token", headers=bearer).json()["token"]
        secrets["ticket"] = ticket
    ws_url = server.base_url.replace("http", "ws", 1) + "/social/api/socials/ws"
    # A socket's query string is never logged, whatever its parameters are called (a
    # client library may name the ticket anything): this one looks like no token.
    secrets["socket_query"] = "socket-query-marker-0123456789"
    with connect(f"{ws_url}?token={ticket}&ref={secrets['socket_query']}") as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "connected"
    with connect(f"{ws_url}?token={ticket}") as socket:  # burned: refused with a close code
        assert json.loads(socket.recv(timeout=10))["type"] == "error"
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)
        secrets["refused_code"] = str(socket.close_code)
    secrets["user_id"] = user["id"]
    return secrets


def run_server(
    tmp_path: Path, log_format: str, *args: str, **env: str
) -> tuple[str, dict[str, str]]:
    server = Server(
        tmp_path,
        agora_env(tmp_path, AGORA_LOG_LEVEL="INFO", AGORA_LOG_FORMAT=log_format, **env),
        args=args,
    ).start()
    try:
        secrets = exercise(server)
    finally:
        server.stop_cleanly()
    return server.log(), secrets


def assert_no_secret(log: str, secrets: dict[str, str]) -> None:
    for name in ("token", "forged", "query", "ticket", "socket_query"):
        assert secrets[name] not in log, f"the {name} is in the log"
    assert JWT_PREFIX not in log
    assert "\x1b" not in log and "\\u001b" not in log  # no ANSI escape, raw or in JSON


def check_access(access: list[dict[str, Any]], secrets: dict[str, str]) -> None:
    user_id = secrets["user_id"]

    def one(method: str, path: str, status: int) -> dict[str, Any]:
        found = [
            a for a in access if (a["method"], a["path"], a["status"]) == (method, path, status)
        ]
        assert found, f"no access line for {method} {path} {status} in {access}"
        assert isinstance(found[-1]["duration_ms"], float) and found[-1]["client"] == "127.0.0.1"
        return found[-1]

    assert one("GET", "/auth/api/me", 200)["user_id"] == user_id
    refused = one("GET", "/auth/api/me", 401)
    assert refused["route"] == "/auth/api/me" and refused.get("user_id") is None
    missing = one("GET", "/no/such/path", 404)
    assert missing.get("route") is None and missing["query"] == "token=[redacted]&page=2"
    assert one("POST", "/auth/api/register", 201)["route"] == "/auth/api/register"
    socket = one("WS", "/social/api/socials/ws", 1000)
    assert socket["user_id"] == user_id and socket["route"] == "/social/api/socials/ws"
    assert "query" not in socket
    reused = one("WS", "/social/api/socials/ws", int(secrets["refused_code"]))
    assert reused.get("user_id") is None and reused["route"] == "/social/api/socials/ws"


def test_json_logs(tmp_path: Path) -> None:
    log, secrets = run_server(tmp_path, "json")
    records = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    assert_no_secret(log, secrets)
    assert any(r["logger"] == "uvicorn.error" and "Started server" in r["message"] for r in records)
    sockets = [
        r["message"]
        for r in records
        if r["logger"] == "uvicorn.error" and "WebSocket" in r["message"]
    ]
    assert sockets and all("?" not in message for message in sockets), sockets
    check_access([r for r in records if r["logger"] == "agora.access"], secrets)
    assert any(r.get("path") == "/nowhere/\\x1b[31mred\\nINFO-forged" for r in records)


def test_json_logs_with_workers(tmp_path: Path, redis_namespace: str) -> None:
    redis = {"AGORA_REDIS_URL": require_redis(), "AGORA_REDIS_NAMESPACE": redis_namespace}
    log, secrets = run_server(tmp_path, "json", "--workers", "2", **redis)
    records = [json.loads(line) for line in log.splitlines()]
    assert_no_secret(log, secrets)
    check_access([r for r in records if r["logger"] == "agora.access"], secrets)


def test_console_logs(tmp_path: Path) -> None:
    log, secrets = run_server(tmp_path, "console")
    lines = log.splitlines()
    assert all(CONSOLE_LINE.match(line) for line in lines), "\n".join(lines)
    assert_no_secret(log, secrets)
    assert any(" uvicorn.error  Started server process" in line for line in lines)
    access = [parse_console_access(line) for line in lines if " agora.access  " in line]
    check_access(access, secrets)
    assert any("/nowhere/\\x1b[31mred\\nINFO-forged 404" in line for line in lines)


def parse_console_access(line: str) -> dict[str, Any]:
    """`... agora.access  GET /a 200 1.2ms route=/a user_id=1 client=127.0.0.1`."""
    message = line.split(" agora.access  ", 1)[1]
    method, path, status, duration, *pairs = message.split(" ")
    fields: dict[str, Any] = dict(pair.split("=", 1) for pair in pairs)
    fields.update(method=method, path=path, status=int(status),
                  duration_ms=float(duration.removesuffix("ms")))  # fmt: skip
    return fields
