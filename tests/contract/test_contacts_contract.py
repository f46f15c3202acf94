"""The `Contacts` port's contract (agora.ports.contacts): who shares a conversation with
whom. Its one real backend, `ConversationContacts` (messaging's tables), runs on SQLite
and PostgreSQL against conversations made the way users make them (messaging's REST
API); it answers social's chat reach and auth's gRPC UserService scope. `Everyone` and
`Nobody` are the two fixed answers (`AGORA_SOCIAL_CHAT_REACH=anyone`, and closed where
no answer can be had): their own expectations close the file.

No memory backend: every process that answers this question reads messaging's tables
in its database (embedded: SQLite), so a memory copy would serve tests only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agora.ports.contacts import EVERYONE, NOBODY, Contacts
from agora.runtime.embedded import create_embedded_app
from agora.services.messaging.contacts import MAX_ASKED, ConversationContacts
from tests.support.settings import make_settings
from tests.support.users import register_and_login


@dataclass
class World:
    """Five users: ann and bob in a direct conversation; ann, cid and dan in a group
    which dan then left; eve in nothing."""

    contacts: Contacts
    ids: dict[str, str]


@contextlib.asynccontextmanager
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    app = create_embedded_app(make_settings(tmp_path, database_url=database_url))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            ids: dict[str, str] = {}
            tokens: dict[str, str] = {}
            for name in ("ann", "bob", "cid", "dan", "eve"):
                user, tokens[name] = await register_and_login(http)
                ids[name] = str(user["id"])

            async def post(who: str, path: str, body: dict[str, object]) -> dict[str, object]:
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                response = await http.post(path, json=body, headers=headers)
                assert response.status_code in (200, 201), response.text
                return dict(response.json())

            await post("ann", "/api/v1/conversations", {"kind": "direct", "user_id": ids["bob"]})
            group = await post(
                "ann",
                "/api/v1/conversations",
                {"kind": "group", "title": "G", "members": [ids["cid"], ids["dan"]]},
            )
            left = await http.delete(
                f"/api/v1/conversations/{group['id']}/members/{ids['dan']}",
                headers={"Authorization": f"Bearer {tokens['dan']}"},
            )
            assert left.status_code == 200, left.text
            messaging = next(a for a in app.apps if a.context.name == "messaging")
            yield World(ConversationContacts(messaging.context.backends.database), ids)


@pytest.fixture
async def contacts(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async with world(tmp_path, database_url) as made:
        yield made


async def test_members_of_a_shared_conversation_are_contacts(contacts: World) -> None:
    ids = contacts.ids
    everyone = list(ids.values())
    assert await contacts.contacts.among(ids["ann"], everyone) == {ids["bob"], ids["cid"]}
    assert await contacts.contacts.among(ids["bob"], everyone) == {ids["ann"]}
    assert await contacts.contacts.among(ids["cid"], everyone) == {ids["ann"]}


async def test_contact_is_mutual(contacts: World) -> None:
    ids = contacts.ids
    for me in ids.values():
        for other in ids.values():
            mine = other in await contacts.contacts.among(me, [other])
            theirs = me in await contacts.contacts.among(other, [me])
            assert mine == theirs


async def test_strangers_leavers_self_and_unknown_ids_are_not(contacts: World) -> None:
    ids = contacts.ids
    assert await contacts.contacts.among(ids["eve"], list(ids.values())) == set()
    assert await contacts.contacts.among(ids["dan"], list(ids.values())) == set()  # left
    assert await contacts.contacts.among(ids["ann"], [ids["ann"], "987654321", "x", ""]) == set()


async def test_only_the_asked_are_answered_duplicates_once(contacts: World) -> None:
    ids = contacts.ids
    assert await contacts.contacts.among(ids["ann"], []) == set()
    asked = [ids["bob"], ids["bob"], ids["eve"]]
    assert await contacts.contacts.among(ids["ann"], asked) == {ids["bob"]}


async def test_a_long_question_is_answered_within_its_bound(contacts: World) -> None:
    ids = contacts.ids
    padding = [str(50_000_000 + n) for n in range(MAX_ASKED - 1)]
    assert await contacts.contacts.among(ids["ann"], [*padding, ids["bob"]]) == {ids["bob"]}


# --- the fixed answers -----------------------------------------------------------------


@pytest.mark.embedded
async def test_everyone_and_nobody() -> None:
    asked = ["1", "2", "3"]
    assert await EVERYONE.among("1", asked) == set(asked)
    assert await NOBODY.among("1", asked) == set()
