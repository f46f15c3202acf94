"""The UserDirectory port's contract, run against both backends on both databases:
LocalUserDirectory (the embedded default, reading `auth_users` in the same database)
and GrpcUserDirectory (auth's real UserService on an ephemeral port, called as the
service `messaging`, as `build_user_directory` configures it).

Then what only the remote backend can meet: auth refusing the token or the service's
secret, a user's own token seeing only their contacts, auth down (a
closed port, a server that never answers) within deadline x retries, and auth coming
back while the directory retries.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agora.adapters.users_grpc import GrpcUserDirectory
from agora.core.errors import Unauthorized
from agora.grpc.server import GrpcServer
from agora.ports.users import MAX_BATCH, UserDirectory, UserInfo, UsersUnavailable
from agora.runtime.backends import MESSAGING_CLIENT
from agora.runtime.process import registrars_of
from agora.security.client_secrets import derived_client_secret
from agora.services.auth.user_directory import LocalUserDirectory
from tests.support.grpc_servers import Running, running_auth
from tests.support.net import free_port
from tests.support.settings import make_settings
from tests.support.users import register_and_login


@dataclass
class Directory:
    users: UserDirectory
    known: list[UserInfo]  # registered users, in registration order
    token: str  # an access token of the first of them


@pytest.fixture
async def auth(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    async with running_auth(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


def messaging_client(auth: Running) -> tuple[str, str]:
    secret = auth.app("auth").context.settings.secret
    return MESSAGING_CLIENT, derived_client_secret(secret, MESSAGING_CLIENT)


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.embedded), "grpc"])
async def directory(request: pytest.FixtureRequest, auth: Running) -> AsyncIterator[Directory]:
    known = []
    token = ""
    for _ in range(3):
        user, issued = await register_and_login(auth.http)
        known.append(UserInfo(str(user["id"]), str(user["login"]), str(user["name"])))
        token = token or issued
    users: LocalUserDirectory | GrpcUserDirectory
    if request.param == "local":
        users = LocalUserDirectory(auth.app("auth").context.backends.database)
    else:
        client = messaging_client(auth)
        users = GrpcUserDirectory(auth.server.target, deadline=5.0, retries=2, client=client)
    try:
        yield Directory(users, known, token)
    finally:
        await users.close()


async def test_known_users_are_described_by_id(directory: Directory) -> None:
    ids = [user.id for user in directory.known]
    found = await directory.users.get_users(ids, directory.token)
    assert found == {user.id: user for user in directory.known}


async def test_unknown_and_impossible_ids_are_absent(directory: Directory) -> None:
    first = directory.known[0]
    strange = [
        "999999999",
        "abc",
        "",
        "-1",
        "1.0",
        " 1",
        "\u0661",
        "9" * 40,
        "0x10",
        first.id + "\x00",
    ]
    found = await directory.users.get_users([*strange, first.id], directory.token)
    assert found == {first.id: first}


async def test_duplicates_and_nothing(directory: Directory) -> None:
    first = directory.known[0]
    assert await directory.users.get_users([first.id] * 5, directory.token) == {first.id: first}
    assert await directory.users.get_users([], directory.token) == {}
    assert await directory.users.get_users(["nope"], directory.token) == {}


async def test_more_ids_than_one_batch(directory: Directory) -> None:
    padding = [str(10_000_000 + n) for n in range(MAX_BATCH * 2 + 7)]
    ids = [*padding[:MAX_BATCH], *(u.id for u in directory.known), *padding[MAX_BATCH:]]
    found = await directory.users.get_users(ids, directory.token)
    assert found == {user.id: user for user in directory.known}


# --- the remote backend only -------------------------------------------------------


async def test_a_refused_token_is_unauthorized(auth: Running) -> None:
    user, _ = await register_and_login(auth.http)
    users = GrpcUserDirectory(auth.server.target, deadline=5.0, retries=3)
    try:
        with pytest.raises(Unauthorized):
            await users.get_users([str(user["id"])], "not-a-token")
        with pytest.raises(UsersUnavailable, match="access token"):
            await users.get_users([str(user["id"])], None)
    finally:
        await users.close()


async def test_a_wrong_service_secret_is_unauthorized(auth: Running) -> None:
    user, token = await register_and_login(auth.http)
    client = (MESSAGING_CLIENT, "not-the-secret")
    users = GrpcUserDirectory(auth.server.target, deadline=5.0, retries=3, client=client)
    try:
        with pytest.raises(Unauthorized):
            await users.get_users([str(user["id"])], token)
    finally:
        await users.close()


async def test_a_users_token_sees_only_themself_and_contacts(auth: Running) -> None:
    me, token = await register_and_login(auth.http)
    stranger, _ = await register_and_login(auth.http)
    users = GrpcUserDirectory(auth.server.target, deadline=5.0, retries=3)
    try:
        found = await users.get_users([str(me["id"]), str(stranger["id"])], token)
    finally:
        await users.close()
    assert set(found) == {str(me["id"])}


async def test_auth_down_is_users_unavailable_quickly(caplog: pytest.LogCaptureFixture) -> None:
    users = GrpcUserDirectory(f"127.0.0.1:{free_port()}", deadline=0.5, retries=3)
    started = time.monotonic()
    try:
        with pytest.raises(UsersUnavailable, match="unavailable, try again later"):
            await users.get_users(["1"], "some-token")
    finally:
        await users.close()
    assert time.monotonic() - started <= 0.5 * 3 + 0.5
    assert "UNAVAILABLE after 3 attempt(s)" in caplog.text  # the details, for operators


async def test_auth_that_never_answers_is_cut_by_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Accepts TCP connections (the kernel's backlog) but never speaks HTTP/2.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        users = GrpcUserDirectory(target, deadline=0.4, retries=3)
        started = time.monotonic()
        try:
            with pytest.raises(UsersUnavailable):
                await users.get_users(["1"], "some-token")
        finally:
            await users.close()
        elapsed = time.monotonic() - started
    assert 0.4 * 2 <= elapsed <= 0.4 * 3 + 0.5  # each attempt waited its deadline, no more
    assert "DEADLINE_EXCEEDED after 3 attempt(s)" in caplog.text


async def test_auth_coming_back_during_retries_answers(auth: Running) -> None:
    user, token = await register_and_login(auth.http)
    port = free_port()
    users = GrpcUserDirectory(f"127.0.0.1:{port}", deadline=0.5, retries=8, max_backoff=0.3)
    late = GrpcServer("127.0.0.1", port, registrars_of(auth.apps))

    async def start_late() -> None:
        await asyncio.sleep(0.4)
        await late.start()

    starting = asyncio.create_task(start_late())
    try:
        found = await users.get_users([str(user["id"])], token)
        assert list(found) == [str(user["id"])]
    finally:
        await starting
        await users.close()
        await late.stop()
