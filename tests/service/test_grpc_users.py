"""Auth's gRPC UserService through a real gRPC client (generated stubs, real channel) on
an ephemeral port, on SQLite and PostgreSQL: lookups, limits, who sees whom (a user:
themself and their contacts; a service: anyone), and every way a token or a service's
secret is refused (each UNAUTHENTICATED and audited, as over HTTP)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import orjson
import pytest
from sqlalchemy import select, text

from agora.adapters.audit_database import AuditEvent
from agora.db.migrate import upgrade
from agora.grpc.stubs import users_pb2, users_pb2_grpc
from agora.security.client_secrets import derived_client_secret
from tests.support.grpc_servers import (
    Running,
    bearer,
    running_auth,
    running_embedded,
    trailing,
)
from tests.support.settings import make_settings
from tests.support.users import register_and_login


@pytest.fixture
async def auth(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with running_auth(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


@pytest.fixture
async def embedded(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with running_embedded(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


def stub(running: Running) -> Any:
    return users_pb2_grpc.UserServiceStub(running.channel)


def basic(client: str, secret: str) -> tuple[tuple[str, str], ...]:
    encoded = base64.b64encode(f"{client}:{secret}".encode()).decode()
    return (("authorization", f"Basic {encoded}"),)


def as_service(running: Running, client: str = "messaging") -> tuple[tuple[str, str], ...]:
    """What another Agora service sends: its client secret, derived from the JWT secret."""
    secret = derived_client_secret(running.app("auth").context.settings.secret, client)
    return basic(client, secret)


async def audit_events(running: Running, event: str) -> list[dict[str, Any]]:
    async with running.app("auth").context.backends.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        )
        return [orjson.loads(row.data) for row in rows.all()]


async def test_get_user_is_id_login_and_name_only(auth: Running) -> None:
    user, token = await register_and_login(auth.http)
    answer = await stub(auth).GetUser(
        users_pb2.GetUserRequest(id=str(user["id"])), metadata=bearer(token), timeout=5
    )
    assert (answer.id, answer.login, answer.name) == (str(user["id"]), user["login"], user["name"])
    assert {f.name for f in users_pb2.User.DESCRIPTOR.fields} == {"id", "login", "name"}
    assert str(user["email"]).encode() not in answer.SerializeToString()


@pytest.mark.parametrize("user_id", ["987654321", "abc", "", "-1", "9" * 30])
async def test_unknown_user_is_not_found(auth: Running, user_id: str) -> None:
    _, token = await register_and_login(auth.http)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(auth).GetUser(
            users_pb2.GetUserRequest(id=user_id), metadata=bearer(token), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "User not found"


async def test_batch_keeps_first_order_and_leaves_unknown_out(auth: Running) -> None:
    first, _ = await register_and_login(auth.http)
    second, _ = await register_and_login(auth.http)
    ids = [str(second["id"]), "nope", str(first["id"]), str(second["id"]), "123456789"]
    answer = await stub(auth).BatchGetUsers(
        users_pb2.BatchGetUsersRequest(ids=ids), metadata=as_service(auth), timeout=5
    )
    assert [(u.id, u.login) for u in answer.users] == [
        (str(second["id"]), second["login"]),
        (str(first["id"]), first["login"]),
    ]
    empty = await stub(auth).BatchGetUsers(
        users_pb2.BatchGetUsersRequest(ids=[]), metadata=as_service(auth), timeout=5
    )
    assert list(empty.users) == []


# --- who sees whom ---------------------------------------------------------------------


async def test_a_user_sees_themself_and_contacts_and_strangers_as_unknown(
    embedded: Running,
) -> None:
    alice, alice_token = await register_and_login(embedded.http)
    bob, _ = await register_and_login(embedded.http)
    stranger, _ = await register_and_login(embedded.http)
    created = await embedded.http.post(
        "/api/v1/conversations",
        json={"kind": "direct", "user_id": str(bob["id"])},
        headers={"Authorization": f"Bearer {alice_token}"},
    )
    assert created.status_code == 201, created.text
    me, contact, other = str(alice["id"]), str(bob["id"]), str(stranger["id"])
    answer = await stub(embedded).BatchGetUsers(
        users_pb2.BatchGetUsersRequest(ids=[other, contact, "987654321", me]),
        metadata=bearer(alice_token),
        timeout=5,
    )
    assert [(u.id, u.login) for u in answer.users] == [
        (contact, bob["login"]),
        (me, alice["login"]),
    ]
    # A stranger's id is answered exactly as an id nobody has: no oracle of existence.
    errors = []
    for user_id in (other, "987654321"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(embedded).GetUser(
                users_pb2.GetUserRequest(id=user_id), metadata=bearer(alice_token), timeout=5
            )
        errors.append((caught.value.code(), caught.value.details(), trailing(caught.value)))
    assert errors[0] == errors[1]
    assert errors[0][:2] == (grpc.StatusCode.NOT_FOUND, "User not found")
    found = await stub(embedded).GetUser(
        users_pb2.GetUserRequest(id=contact), metadata=bearer(alice_token), timeout=5
    )
    assert found.login == bob["login"]


async def test_a_service_sees_anyone(embedded: Running) -> None:
    first, _ = await register_and_login(embedded.http)
    second, _ = await register_and_login(embedded.http)
    ids = [str(first["id"]), str(second["id"])]
    answer = await stub(embedded).BatchGetUsers(
        users_pb2.BatchGetUsersRequest(ids=ids), metadata=as_service(embedded), timeout=5
    )
    assert [u.login for u in answer.users] == [first["login"], second["login"]]
    one = await stub(embedded).GetUser(
        users_pb2.GetUserRequest(id=ids[1]), metadata=as_service(embedded, "social"), timeout=5
    )
    assert one.login == second["login"]


async def test_a_bad_service_secret_is_unauthenticated_and_audited(auth: Running) -> None:
    user, _ = await register_and_login(auth.http)
    right = derived_client_secret(auth.app("auth").context.settings.secret, "messaging")
    before = len(await audit_events(auth, "auth.rejected"))
    bad = [
        basic("messaging", "not-the-secret"),
        basic("social", right),  # another client's secret
        basic("", right),
        (("authorization", "Basic !!not-base64"),),
        (("authorization", "Basic " + base64.b64encode(b"no-colon").decode()),),
    ]
    for metadata in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(auth).BatchGetUsers(
                users_pb2.BatchGetUsersRequest(ids=[str(user["id"])]),
                metadata=metadata,
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == "Invalid client credentials"
    events = (await audit_events(auth, "auth.rejected"))[before:]
    assert len(events) == len(bad)
    assert {e["reason"] for e in events} == {"bad_client_secret"}
    assert {e["method"] for e in events} == {"/agora.auth.v1.UserService/BatchGetUsers"}
    assert {e["transport"] for e in events} == {"grpc"}


async def test_batch_over_the_cap_is_invalid_argument(auth: Running) -> None:
    _, token = await register_and_login(auth.http)
    at_cap = users_pb2.BatchGetUsersRequest(ids=[str(n) for n in range(500)])
    answer = await stub(auth).BatchGetUsers(at_cap, metadata=bearer(token), timeout=5)
    assert len(answer.users) <= 500
    over = users_pb2.BatchGetUsersRequest(ids=[str(n) for n in range(501)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(auth).BatchGetUsers(over, metadata=bearer(token), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "At most 500 ids per call"
    assert trailing(caught.value)["field"] == "ids"


# --- refused tokens ------------------------------------------------------------------


async def refused(running: Running, metadata: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(running).GetUser(users_pb2.GetUserRequest(id="1"), metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return caught.value


async def test_every_refused_token_is_unauthenticated_and_audited(auth: Running) -> None:
    user, token = await register_and_login(auth.http)
    settings = auth.app("auth").context.settings
    tokens = auth.app("auth").context.tokens
    claims = {
        "sub": str(user["id"]), "user_id": str(user["id"]), "login": user["login"],
        "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "typ": "access",
        "iat": int(time.time()), "nbf": int(time.time()), "exp": int(time.time()) + 600,
        "jti": "forged",
    }  # fmt: skip
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-0123456789", "HS256")
    lifetime = -(settings.token_leeway + 60)
    expired = tokens.issue(str(user["id"]), "access", lifetime, login=user["login"]).token
    ticket = tokens.issue(str(user["id"]), "ws-connect", 10).token
    # The PostgreSQL database is shared by the run's tests: count only what this one adds.
    before = len(await audit_events(auth, "auth.rejected"))

    assert (await refused(auth, ())).details() == "Token required"
    assert (await refused(auth, (("authorization", f"Digest {token}"),))).details() == (
        "Token required"
    )
    assert (await refused(auth, (("authorization", "Bearer "),))).details() == "Token required"
    for bad, details in [
        ("garbage", "Invalid token"),
        (forged, "Invalid token"),
        (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "Invalid token"),
        (expired, "Token expired"),
        (ticket, "Invalid token type"),
    ]:
        assert (await refused(auth, bearer(bad))).details() == details

    events = (await audit_events(auth, "auth.rejected"))[before:]
    grpc_events = [e for e in events if e.get("transport") == "grpc"]
    assert len(events) == len(grpc_events) == 8
    assert {e["method"] for e in grpc_events} == {"/agora.auth.v1.UserService/GetUser"}
    assert {e["ip"] for e in grpc_events} == {"127.0.0.1"}
    assert {e["status"] for e in grpc_events} == {401}


async def test_a_logged_out_token_is_refused(auth: Running) -> None:
    user, token = await register_and_login(auth.http)
    request = users_pb2.GetUserRequest(id=str(user["id"]))
    assert (await stub(auth).GetUser(request, metadata=bearer(token), timeout=5)).id
    logout = await auth.http.post("/auth/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status_code in (200, 204), logout.text
    error = await refused(auth, bearer(token))
    assert error.details() == "Token revoked"
    reasons = [e["reason"] for e in await audit_events(auth, "auth.rejected")]
    assert "revoked" in reasons


# --- failures that are ours ----------------------------------------------------------


async def test_an_internal_failure_leaks_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'agora.db'}"
    await asyncio.to_thread(upgrade, url)
    async with running_auth(make_settings(tmp_path, database_url=url)) as running:
        user, token = await register_and_login(running.http)
        database = running.app("auth").context.backends.database
        async with database.transaction() as session:  # the table is gone: a bug of ours
            await session.execute(text("ALTER TABLE auth_users RENAME TO auth_users_gone"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(running).GetUser(
                users_pb2.GetUserRequest(id=str(user["id"])), metadata=bearer(token), timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "Internal error"
    assert trailing(caught.value) == {}
