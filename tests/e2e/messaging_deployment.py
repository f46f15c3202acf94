"""Messaging as it is deployed: auth, social (which issues the socket tickets) and TWO
messaging instances, each its own `agora serve` process on PostgreSQL, Redis and
RabbitMQ, behind nginx on deploy/nginx/agora.conf: `agora cluster`'s processes
(tests/e2e/gateway.cluster). Messaging finds users through auth's gRPC UserService,
which the cluster points it at. A person is a registered, logged-in user; their devices
are `Device`s opened through nginx or pinned to one instance (`instance_ws`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agora.runtime.cluster import Cluster
from tests.e2e.gateway import cluster, nginx_log, require_nginx, socket_upstreams, ticket
from tests.e2e.processes import Deployment, bearer, deployment, login, register
from tests.support.messaging_client import SOCKET_PATH, Device
from tests.support.services import require_rabbitmq, require_redis

INSTANCES = ("messaging.1", "messaging.2")
# Typing indicators stop after this long without a refresh (5 s by default).
TYPING_TTL = 1.0


@dataclass
class Messaging:
    services: Deployment
    gateway: Cluster

    def instance_url(self, name: str) -> str:
        return self.gateway.instances[name].url

    def instance_ws(self, name: str) -> str:
        return self.instance_url(name).replace("http://", "ws://", 1)

    def instance_address(self, name: str) -> str:
        return self.gateway.instances[name].address

    def access_log(self) -> str:
        return nginx_log(self.gateway, "access.log")

    def socket_upstreams(self, since: int = 0) -> list[str]:
        """The instance behind each messaging socket nginx upgraded (101), in the order
        they closed (nginx logs a socket when it ends), from access log offset `since`."""
        return socket_upstreams(self.gateway, SOCKET_PATH, since)


@contextlib.contextmanager
def messaging_deployment(root: Path) -> Iterator[Messaging]:
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    with deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services:
        counts = {"auth": 1, "publications": 0, "social": 1, "messaging": len(INSTANCES)}
        with cluster(services, counts, AGORA_MESSAGING_TYPING_TTL=str(TYPING_TTL)) as started:
            yield Messaging(services, started)


# --- people and their devices ------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: str
    login: str
    token: str


async def person(client: httpx.AsyncClient, prefix: str) -> Person:
    """A new user (unique login), registered and logged in through `client`."""
    user = await register(client, prefix)
    return Person(user["id"], user["login"], await login(client, user))


async def device(client: httpx.AsyncClient, who: Person, base_ws: str, name: str) -> Device:
    """A socket of `who` on `base_ws` (nginx or one instance), welcomed; its ticket comes
    from social's connect-token through nginx."""
    opened = await Device.open(base_ws, await ticket(client, who.token), name)
    assert opened.welcome["payload"]["user_id"] == who.id, opened.welcome
    assert opened.welcome["payload"]["login"] == who.login
    return opened


async def call(
    client: httpx.AsyncClient,
    who: Person,
    method: str,
    path: str,
    *,
    json: Any = None,
    expect: int = 200,
) -> Any:
    """One REST call as `who`; the status must be `expect`; returns the JSON body."""
    response = await client.request(method, path, json=json, headers=bearer(who.token))
    assert response.status_code == expect, (
        f"{method} {path}: {response.status_code} {response.text}"
    )
    return response.json()


async def direct_conversation(client: httpx.AsyncClient, one: Person, other: Person) -> str:
    body = await call(
        client,
        one,
        "POST",
        "/api/v1/conversations",
        json={"kind": "direct", "user_id": other.id},
        expect=201,
    )
    assert sorted(body["members"]) == sorted([one.id, other.id]), body
    conversation_id: str = body["id"]
    return conversation_id


async def send_rest(
    client: httpx.AsyncClient, who: Person, conversation_id: str, client_id: str, text: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"client_id": client_id, "text": text},
        headers=bearer(who.token),
    )


async def all_messages(
    client: httpx.AsyncClient, who: Person, conversation_id: str
) -> list[dict[str, Any]]:
    """Every message of the conversation, paged forward over REST, ascending seq."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await call(
            client,
            who,
            "GET",
            f"/api/v1/conversations/{conversation_id}/messages?after={after}&limit=100",
        )
        found.extend(page["messages"])
        if not page["has_more"] or not page["messages"]:
            return found
        after = page["messages"][-1]["seq"]
