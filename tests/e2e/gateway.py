"""nginx in front of a `Deployment`, on deploy/nginx/agora.conf rendered for the test.

`Gateway` renders the production file with the test's instance addresses and a free
listen port (deploy/nginx/render.py: only upstream `server` lines and `listen` change),
wraps it so that pid, logs and temporary files stay in the test's directory, checks it
with `nginx -t`, and runs `nginx -g 'daemon off;'` as a child process.

Also the socket side of a client: `ticket` (connect-token over HTTP) and `Socket`, a
`websockets` client that reads JSON frames with a bounded wait.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.agora_command import Server
from tests.e2e.processes import Deployment, bearer
from tests.support.net import free_port
from tests.support.services import require_services

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "deploy" / "nginx" / "render.py"
START_SECONDS = 10.0
STOP_SECONDS = 10.0
FRAME_SECONDS = 5.0
WS_PATH = "/social/api/socials/ws"


def load_render() -> ModuleType:
    """deploy/nginx/render.py, which is a script beside the config, not a package."""
    spec = importlib.util.spec_from_file_location("agora_nginx_render", RENDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_nginx() -> str:
    """The nginx binary; skip (fail under AGORA_REQUIRE_SERVICES=1) without one."""
    binary = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()),
        None,
    )
    if binary is None:
        message = "nginx is not installed (apt-get install nginx)"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    return binary


def nginx_check(binary: str, config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t`: parse the configuration and open its files, without serving."""
    command = [binary, "-t", "-p", str(prefix), "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def start_instance(deployed: Deployment, name: str, service: str, **overrides: str) -> Server:
    """One more `agora serve SERVICE` of the deployment, under its own name ("social-b"):
    `Deployment.start` keeps one process per service, a gateway wants several.
    `overrides` are this instance's own settings (AGORA_*), e.g. its gRPC port."""
    assert name not in deployed.servers, name
    server = Server(deployed.root, deployed.env(**overrides), args=(service,))
    deployed.servers[name] = server
    return server.start()


@dataclass
class Gateway:
    """One nginx process on the rendered agora.conf, listening on 127.0.0.1:port."""

    prefix: Path
    upstreams: Mapping[str, Sequence[str]]
    binary: str = field(default_factory=require_nginx)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.prefix / "nginx.conf"

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.prefix / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def socket_upstreams(self, since: int = 0) -> list[str]:
        """The instance behind each WebSocket nginx upgraded (101), from access log offset
        `since` on; nginx logs a socket when it closes."""
        return [
            line.rsplit("upstream=", 1)[1].strip()
            for line in self.access_log()[since:].splitlines()
            if f'"GET {WS_PATH} ' in line and '" 101 ' in line
        ]

    def write_config(self) -> Path:
        render = load_render()
        http_config = render.render(
            f"127.0.0.1:{self.port}",
            self.upstreams,
            access_log=self.prefix / "logs" / "access.log",
        )
        self.config_file.write_text(render.standalone(http_config, self.prefix))
        return self.config_file

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.config_file), *extra]

    def start(self) -> Gateway:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.write_config()
        checked = nginx_check(self.binary, self.config_file, self.prefix)
        assert checked.returncode == 0, checked.stderr
        log = (self.prefix / "nginx.out").open("ab")
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"nginx exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"nginx did not listen within {START_SECONDS}s:\n{self.error_log()}")

    def stop(self) -> None:
        """SIGQUIT is nginx's graceful stop; SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the socket, as a client sees it ---------------------------------------------------


async def ticket(client: httpx.AsyncClient, token: str) -> str:
    """GET /social/api/socials/connect-token with the access token: a one-time ticket."""
    response = await client.get("/social/api/socials/connect-token", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True, body
    value: str = body["token"]
    return value


class Socket:
    """A `websockets` client connection that speaks JSON frames."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, base_ws_url: str, ticket_value: str | None, **options: Any) -> Socket:
        query = "" if ticket_value is None else f"?token={ticket_value}"
        connection = await connect(
            f"{base_ws_url}{WS_PATH}{query}", open_timeout=FRAME_SECONDS, proxy=None, **options
        )
        return cls(connection)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(orjson.dumps(frame).decode())

    async def receive(self, timeout: float = FRAME_SECONDS) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def receive_type(self, kind: str, timeout: float = FRAME_SECONDS) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others (presence noise, ...)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.receive(max(0.01, deadline - time.monotonic()))
            if frame.get("type") == kind:
                return frame

    async def refused(self) -> tuple[str, int | None, str]:
        """(error frame's message, close code, close reason) of a socket the server refuses."""
        frame = await self.receive()
        assert frame.get("type") == "error", frame
        try:
            extra = await asyncio.wait_for(self.connection.recv(), FRAME_SECONDS)
            pytest.fail(f"a refused socket sent another frame: {extra!r}")
        except ConnectionClosed:
            pass
        return str(frame["message"]), self.connection.close_code, self.connection.close_reason or ""

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
