"""gRPC tools work on every Agora gRPC server (issue 10 §5): server reflection and the
standard grpc.health.v1 service, seen by a foreign client, @grpc/grpc-js under Node
with grpc-js-reflection-client (tests/js/grpc_tools_probe.js): no .proto file on its side.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.db.migrate import upgrade
from agora.grpc.server import GrpcServer
from tests.support.grpc_servers import running_auth, running_embedded
from tests.support.node import require_node, run_script
from tests.support.settings import make_settings

USERS = "agora.auth.v1.UserService"
MESSAGING = "agora.messaging.v1.MessagingService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
SERVING = {"status": "SERVING"}
NOT_FOUND = 5  # gRPC's status code for a service the health server does not know


async def probe(target: str, *also_check: str) -> dict[str, dict[str, object]]:
    node = require_node("@grpc/grpc-js", "grpc-js-reflection-client")
    result: dict[str, dict[str, object]] = json.loads(
        await run_script(node, "grpc_tools_probe.js", target, *also_check)
    )
    return result


async def test_every_service_of_the_embedded_process_is_listed_and_serving(
    tmp_path: Path,
) -> None:
    async with running_embedded(make_settings(tmp_path)) as running:
        seen = await probe(running.server.target, "no.such.Service")
    assert set(seen["services"]) == {USERS, MESSAGING, HEALTH, REFLECTION}  # type: ignore[arg-type]
    assert {"GetUser", "BatchGetUsers"} <= set(seen["methods"][USERS])  # type: ignore[index]
    assert "SendMessage" in seen["methods"][MESSAGING]  # type: ignore[index]
    assert seen["health"][""] == SERVING
    for service in (USERS, MESSAGING, HEALTH):
        assert seen["health"][service] == SERVING, service
    assert seen["health"]["no.such.Service"]["code"] == NOT_FOUND  # type: ignore[index]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
    upgrade(url)  # alembic runs its own event loop: outside the test's
    return url


async def test_a_process_lists_only_what_it_serves(tmp_path: Path, sqlite_url: str) -> None:
    async with running_auth(make_settings(tmp_path, database_url=sqlite_url)) as running:
        seen = await probe(running.server.target, MESSAGING)
    assert set(seen["services"]) == {USERS, HEALTH, REFLECTION}  # type: ignore[arg-type]
    assert seen["health"][MESSAGING]["code"] == NOT_FOUND  # type: ignore[index]


async def test_health_turns_not_serving_when_the_server_stops() -> None:
    """A balancer watching the server learns it is going before the calls stop."""
    server = GrpcServer("127.0.0.1", 0, [], grace=1.0)
    await server.start()
    async with grpc.aio.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await asyncio.wait_for(watch.read(), 10)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop())
        then = await asyncio.wait_for(watch.read(), 10)
        assert then.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
