"""The gateway: nginx on deploy/nginx/agora.conf in front of separate `agora serve`
processes (one auth, one publications, TWO social), on PostgreSQL, Redis and RabbitMQ.

Every HTTP request below goes through nginx only; the socket tests also connect to each
social instance directly, to pin two users to different instances and prove that chat
and presence cross between them (Redis pub/sub), and that a ticket burned on one
instance is refused on the other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from agora.db.engine import Database, utcnow
from agora.runtime import nginx
from agora.runtime.cluster import Cluster
from agora.services.messaging.repository import MessagingRepository
from tests.e2e.gateway import (
    WS_PATH,
    Socket,
    cluster,
    logs,
    nginx_log,
    require_nginx,
    socket_upstreams,
    ticket,
)
from tests.e2e.processes import Deployment, bearer, deployment, login, register, wait_until
from tests.support.services import require_rabbitmq, require_redis
from tests.support.users import PASSWORD, unique_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAX_BODY = 1_048_576  # AGORA_MAX_BODY_BYTES and nginx's client_max_body_size 1m
SOCIAL = ("social.1", "social.2")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Cluster]]:
    """`agora cluster`'s processes: one auth, one publications and two social instances
    behind nginx. No messaging instance: its paths answer nginx's 502."""
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    root = tmp_path_factory.mktemp("e2e-gateway")
    with deployment(root, redis_url=redis_url, amqp_url=amqp_url) as services:
        counts = {"auth": 1, "publications": 1, "social": 2, "messaging": 0}
        with cluster(services, counts) as started:
            yield services, started


@pytest.fixture
def services(deployed: tuple[Deployment, Cluster]) -> Deployment:
    return deployed[0]


@pytest.fixture
def gateway(deployed: tuple[Deployment, Cluster]) -> Cluster:
    return deployed[1]


@pytest.fixture
async def client(gateway: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        yield http


def from_address(gateway: Cluster, source: str) -> httpx.AsyncClient:
    """A client whose connections to nginx come from another loopback address: its own
    client IP for nginx's login zone and for the app's throttles."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=gateway.url, timeout=10, transport=transport)


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """`name=value; Attr=x; Flag` -> (name, value, {attr lowercased: value})."""
    first, *rest = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    attributes = {}
    for part in rest:
        key, _, attr_value = part.partition("=")
        attributes[key.lower()] = attr_value
    return name, value, attributes


# --- the configuration itself ----------------------------------------------------------


def test_rendering_changes_only_instances_and_listen(tmp_path: Path) -> None:
    original = nginx.CONFIG.read_text().splitlines()
    upstreams = {"auth": ["127.0.0.1:1"], "publications": ["127.0.0.1:2"],
                 "social": ["127.0.0.1:3", "127.0.0.1:4"], "messaging": []}  # fmt: skip
    rendered = nginx.render("127.0.0.1:9999", upstreams).splitlines()
    changed = [line.strip() for line in rendered if line not in original]
    assert changed, "rendering changed nothing"
    allowed = ("server 127.0.0.1:", "listen 127.0.0.1:9999;")
    assert all(line.startswith(allowed) for line in changed), changed
    assert f"server {nginx.NO_INSTANCE};" in changed  # no messaging instance: 502
    with pytest.raises(ValueError, match="upstreams"):  # every service's instances, or none
        nginx.render("127.0.0.1:9999", {"auth": ["127.0.0.1:1"]})
    # The production file, as is (port 80, its own instances; only the log elsewhere),
    # is valid nginx.
    production = tmp_path / "nginx.conf"
    as_is = nginx.render(access_log=tmp_path / "access.log")
    production.write_text(nginx.standalone(as_is, tmp_path))
    checked = nginx.check(require_nginx(), production, tmp_path)
    assert checked.returncode == 0, checked.stderr


# --- HTTP through nginx ------------------------------------------------------------------


async def test_login_cookie_me_and_publications(
    services: Deployment, client: httpx.AsyncClient
) -> None:
    user = await register(client, "gw")
    response = await client.post(
        "/auth/api/login", json={"login": user["login"], "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token = response.json()["token"]

    # The cookie comes back through nginx with every attribute the service set.
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name, value, attributes = cookie_attributes(header)
        cookies[name] = (value, attributes)
    value, attributes = cookies["auth_token"]
    assert value == token
    assert {"httponly", "secure", "path", "samesite", "max-age"} <= set(attributes)
    assert (attributes["path"], attributes["samesite"].lower()) == ("/", "strict")
    assert attributes["max-age"] == "3600"

    me = await client.get("/auth/api/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["id"] == user["id"], me.text
    # The cookie reaches the service too (sent by hand: it is Secure, and this is http).
    by_cookie = await client.get("/auth/api/me", headers={"Cookie": f"auth_token={token}"})
    assert by_cookie.status_code == 200 and by_cookie.json()["id"] == user["id"]
    assert (await client.get("/auth/api/me")).status_code == 401

    # The `connected` event crosses RabbitMQ to the publications process.
    async def listed() -> httpx.Response | None:
        answer = await client.get("/api/publications", headers=bearer(token))
        return answer if answer.status_code == 200 else None

    listing = await wait_until(
        listed, timeout=15, what="GET /api/publications", logs=lambda: logs(gateway)
    )
    assert listing.json()["publications"] == []
    created = await client.post(
        "/api/publications", json={"title": "via nginx"}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    one = await client.get(f"/api/publications/{created.json()['id']}", headers=bearer(token))
    assert one.status_code == 200 and one.json()["title"] == "via nginx"


async def test_gateway_errors_are_json(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/nowhere")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Not found"})
    # The messaging upstream has no instance running: nginx's 502, as JSON.
    down = await client.get("/api/v1/conversations")
    assert down.status_code == 502
    assert down.headers["content-type"] == "application/json"
    assert down.json() == {"error": "Service unavailable"}
    # A service's own errors pass through untouched (not replaced by nginx's pages).
    missing = await client.get("/auth/api/nothing-here")
    assert missing.status_code == 404 and "error" in missing.json()


async def test_gateway_health_and_each_services_readiness(gateway: Cluster) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz/auth")  # one auth instance's own /readyz
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        # No instance of messaging runs: nginx's 502, never a ready answer.
        assert (await client.get("/readyz/messaging")).status_code == 502
    # Readiness names backends and errors: refused to other addresses than loopback's.
    async with from_address(gateway, "127.0.0.2") as other:
        refused = await other.get("/readyz/auth")
    assert (refused.status_code, refused.json()) == (403, {"error": "Forbidden"})


async def test_client_address_reaches_the_app(services: Deployment, gateway: Cluster) -> None:
    """nginx sends X-Forwarded-For/X-Real-IP; uvicorn believes them from 127.0.0.1 (nginx),
    so the service sees the client's address, not nginx's, nor a forged one."""
    async with from_address(gateway, "127.0.0.2") as client:
        user = await register(client, "gwip")
        forged = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
        response = await client.post(
            "/auth/api/login",
            json={"login": user["login"], "password": PASSWORD},
            headers=forged,
        )
        assert response.status_code == 200, response.text
    rows = await services.fetch(
        "SELECT data FROM audit_events WHERE event = 'auth.login' AND user_id = $1", user["id"]
    )
    assert [orjson.loads(row["data"])["ip"] for row in rows] == ["127.0.0.2"]


async def test_body_over_the_limit_is_refused_by_nginx(
    gateway: Cluster, client: httpx.AsyncClient
) -> None:
    # Exactly the limit passes nginx and reaches the service (which judges the login).
    padding = MAX_BODY - len(orjson.dumps({"login": "x", "password": ""}))
    at_limit = orjson.dumps({"login": "x", "password": "p" * padding})
    assert len(at_limit) == MAX_BODY
    headers = {"Content-Type": "application/json"}
    answer = await client.post("/auth/api/register", content=at_limit, headers=headers)
    assert answer.status_code in (400, 422), answer.text

    over = await client.post("/auth/api/register", content=at_limit + b" ", headers=headers)
    assert over.status_code == 413
    assert over.json() == {"error": "Request body too large"}
    assert "client intended to send too large body: 1048577 bytes" in nginx_log(
        gateway, "error.log"
    )


async def test_login_burst_is_limited_by_nginx(gateway: Cluster) -> None:
    """burst=10 at 1 r/s per client address: of 30 logins at once, 11 pass. From a
    loopback address of its own, so that the other tests' logins are not limited."""
    async with from_address(gateway, "127.0.0.3") as client:
        attempts = [
            client.post(path, json={"login": unique_login("burst"), "password": "wrong"})
            for path in ("/auth/api/login", "/login")
            for _ in range(15)
        ]
        answers = await asyncio.gather(*attempts)
    limited = [a for a in answers if a.status_code == 429]
    passed = [a for a in answers if a.status_code != 429]
    # 1 + burst; a loaded machine may spread the arrivals over a refill or two.
    assert 11 <= len(passed) <= 14, [a.status_code for a in answers]
    assert {a.status_code for a in passed} == {401}  # the service said: wrong credentials
    for answer in limited:
        assert answer.json() == {"error": "Too many requests"}
        assert answer.headers["retry-after"] == "1"
    assert "limiting requests, excess" in nginx_log(gateway, "error.log")


# --- the social socket through nginx, and across instances -------------------------------


async def logged_in(client: httpx.AsyncClient, prefix: str) -> tuple[dict[str, str], str]:
    user = await register(client, prefix)
    return user, await login(client, user)


async def test_socket_through_nginx_welcome_echo_and_reuse(
    services: Deployment, gateway: Cluster, client: httpx.AsyncClient
) -> None:
    user, token = await logged_in(client, "gwws")
    one_time = await ticket(client, token)
    async with await Socket.open(gateway.ws_url, one_time) as socket:
        welcome = await socket.receive()
        assert welcome == {
            "type": "connected",
            "userId": user["id"],
            "login": user["login"],
            "message": "Welcome to Social WebSocket!",
        }
        await socket.send({"type": "chat", "content": "Bonjour !"})
        echo = await socket.receive_type("echo")
        assert echo["content"] == "Bonjour !"

        # The same ticket again, through nginx (either instance) and on each instance
        # directly: burned once for all of them.
        for base in (gateway.ws_url, *(gateway.instances[name].url for name in SOCIAL)):
            again = await Socket.open(base.replace("http://", "ws://"), one_time)
            assert await again.refused() == ("Token already used", 4409, "Token already used")

    # The ticket can also be had with the cookie alone, through nginx.
    by_cookie = await client.get(
        "/social/api/socials/connect-token", headers={"Cookie": f"auth_token={token}"}
    )
    assert by_cookie.status_code == 200 and by_cookie.json()["success"] is True
    refused = await Socket.open(gateway.ws_url, None)
    assert await refused.refused() == ("Token required", 4400, "Token required")
    access_token = await Socket.open(gateway.ws_url, token)
    assert (await access_token.refused())[:2] == ("Invalid token type", 4403)


async def share_a_conversation(database_url: str, *user_ids: str) -> None:
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            repository = MessagingRepository(session)
            conversation_id, now = uuid.uuid4().hex, utcnow()
            await repository.add_conversation(
                {"id": conversation_id, "kind": "group", "title": "e2e", "owner_id": user_ids[0],
                 "created_at": now, "last_activity_at": now, "last_seq": 0, "last_version": 0}
            )  # fmt: skip
            await repository.add_members(conversation_id, user_ids, now, 0)
    finally:
        await database.close()


async def chat_and_presence(
    client: httpx.AsyncClient, database_url: str, alice_base: str, bob_base: str, prefix: str
) -> None:
    """bob watches alice; alice comes online (join), they chat both ways (delivered +
    ack), alice leaves (leave). alice's and bob's sockets open on the given bases."""
    alice, alice_token = await logged_in(client, f"{prefix}a")
    bob, bob_token = await logged_in(client, f"{prefix}b")
    # Chat and presence reach only people who share a messaging conversation
    # (docs/social.md); no messaging runs here, so the rows go straight into the
    # deployment's database, which social reads.
    await share_a_conversation(database_url, alice["id"], bob["id"])

    async with await Socket.open(bob_base, await ticket(client, bob_token)) as bob_socket:
        assert (await bob_socket.receive())["type"] == "connected"
        await bob_socket.send({"type": "presence.watch", "users": [alice["id"]]})
        assert await bob_socket.receive_type("presence") == {"type": "presence", "online": []}

        alice_socket = await Socket.open(alice_base, await ticket(client, alice_token))
        assert (await alice_socket.receive())["type"] == "connected"
        joined = await bob_socket.receive_type("presence.join")
        assert joined["userId"] == alice["id"]
        await alice_socket.send({"type": "presence.query", "users": [bob["id"]]})
        assert await alice_socket.receive_type("presence") == {
            "type": "presence",
            "online": [bob["id"]],
        }

        await alice_socket.send({"type": "chat", "to": bob["id"], "content": "salut", "id": "c1"})
        ack = await alice_socket.receive_type("ack")
        delivered = await bob_socket.receive_type("chat")
        assert (ack["to"], ack["clientId"]) == (bob["id"], "c1")
        assert delivered["from"] == alice["id"] and delivered["fromLogin"] == alice["login"]
        assert delivered["content"] == "salut" and delivered["id"] == ack["id"]

        await bob_socket.send({"type": "chat", "to": int(alice["id"]), "content": "coucou"})
        assert (await bob_socket.receive_type("ack"))["to"] == alice["id"]
        assert (await alice_socket.receive_type("chat"))["content"] == "coucou"

        await alice_socket.close()
        left = await bob_socket.receive_type("presence.leave")
        assert left["userId"] == alice["id"]


async def test_chat_and_presence_across_two_instances(
    services: Deployment, gateway: Cluster, client: httpx.AsyncClient
) -> None:
    """alice on social.1, bob on social.2, each connected to its instance directly."""
    instance_a, instance_b = (
        gateway.instances[name].url.replace("http://", "ws://") for name in SOCIAL
    )
    await chat_and_presence(client, services.database_url, instance_a, instance_b, "gwx")


async def test_chat_and_presence_through_nginx(
    services: Deployment, gateway: Cluster, client: httpx.AsyncClient
) -> None:
    """The same flow with both sockets through nginx, which (least_conn) puts the second
    socket on the instance without one: the two users are on different instances."""
    since = len(nginx_log(gateway, "access.log"))
    await chat_and_presence(client, services.database_url, gateway.ws_url, gateway.ws_url, "gwn")

    async def both_logged() -> list[str] | None:
        upstreams = socket_upstreams(gateway, WS_PATH, since)
        return upstreams if len(upstreams) == 2 else None

    upstreams = await wait_until(both_logged, timeout=5, what="two sockets in nginx's log")
    instances = {gateway.instances[name].address for name in SOCIAL}
    assert set(upstreams) == instances
