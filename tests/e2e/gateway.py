"""The distributed deployment of a test: `agora cluster`'s own `Cluster` (the library
function the command runs) on a `Deployment`'s database, Redis namespace and AMQP names,
its output in a file of the test's own; and nginx's logs as the tests read them.

Also the socket side of a client: `ticket` (connect-token over HTTP) and `Socket`, a
`websockets` client that reads JSON frames with a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agora.runtime import nginx
from agora.runtime.cluster import Cluster, ClusterError
from tests.e2e.processes import Deployment, bearer
from tests.support.net import free_port
from tests.support.services import require_services

FRAME_SECONDS = 5.0
WS_PATH = "/social/api/socials/ws"


def require_nginx() -> str:
    """The nginx binary; skip (fail under AGORA_REQUIRE_SERVICES=1) without one."""
    binary = nginx.find_nginx()
    if binary is None:
        message = "nginx is not installed (apt-get install nginx)"
        if require_services():
            pytest.fail(message)
        pytest.skip(message)
    return binary


@contextlib.contextmanager
def cluster(services: Deployment, counts: Mapping[str, int], **env: str) -> Iterator[Cluster]:
    """`counts` instances per service (on free ports) behind nginx on a free port, on the
    deployment's backends; `env` adds settings for every instance."""
    require_nginx()
    log = (services.root / "cluster.log").open("a")
    started = Cluster(counts, services.env(**env), services.root, port=free_port(),
                      free_ports=True, stream=log)  # fmt: skip
    try:
        with started.running():
            yield started
    except ClusterError as error:
        pytest.fail(f"agora cluster: {error}\n{logs(started)}")
    finally:
        log.close()


def logs(started: Cluster) -> str:
    return "\n".join(
        f"--- {name} (tail) ---\n{started.output.tail(name)[-4000:]}"
        for name in ("cluster", "migrate", *started.instances)
    )


def nginx_log(started: Cluster, name: str) -> str:
    """nginx's `error.log` or `access.log`."""
    path = started.prefix / "logs" / name
    return path.read_text(errors="replace") if path.exists() else ""


def socket_upstreams(started: Cluster, path: str, since: int = 0) -> list[str]:
    """The instance behind each WebSocket on `path` nginx upgraded (101), from access log
    offset `since` on, in the order they closed (nginx logs a socket when it ends)."""
    return [
        line.rsplit("upstream=", 1)[1].strip()
        for line in nginx_log(started, "access.log")[since:].splitlines()
        if f'"GET {path} ' in line and '" 101 ' in line
    ]


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
