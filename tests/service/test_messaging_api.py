"""Messaging REST (`/api/v1`) through the embedded app, on SQLite and PostgreSQL:
conversations, members, messages (idempotent sends, paging both ways, edits, tombstones),
read cursors and unread counts, the 401/403/404/409/422/429 answers. Media uploads and
body limits: test_messaging_media_api.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from agora.core.settings import Settings
from tests.service.messaging_support import (
    Person,
    api_settings,
    direct,
    embedded_client,
    group,
    send,
    sign_up,
    unknown_id,
)

C = "/api/v1/conversations"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
async def people(embedded: httpx.AsyncClient) -> list[Person]:
    return await sign_up(embedded, 3)


def fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return response.json()["fields"]  # type: ignore[no-any-return]


ROUTES = [
    ("POST", C),
    ("GET", C),
    ("GET", f"{C}/{'a' * 32}"),
    ("PATCH", f"{C}/{'a' * 32}"),
    ("POST", f"{C}/{'a' * 32}/members"),
    ("DELETE", f"{C}/{'a' * 32}/members/1"),
    ("POST", f"{C}/{'a' * 32}/messages"),
    ("GET", f"{C}/{'a' * 32}/messages"),
    ("PATCH", f"{C}/{'a' * 32}/messages/{'b' * 32}"),
    ("DELETE", f"{C}/{'a' * 32}/messages/{'b' * 32}"),
    ("POST", f"{C}/{'a' * 32}/read"),
    ("GET", "/api/v1/unread"),
    ("POST", "/api/v1/media"),
    ("GET", f"/api/v1/media/{'c' * 32}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_a_token(
    embedded: httpx.AsyncClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await embedded.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_direct_is_one_per_pair(embedded: httpx.AsyncClient, people: list[Person]) -> None:
    alice, bob, _ = people
    first = await embedded.post(C, json={"kind": "direct", "user_id": bob.id}, headers=alice.auth)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["kind"] == "direct" and body["owner_id"] is None
    assert sorted(body["members"]) == sorted([alice.id, bob.id])
    assert (body["read_seq"], body["unread"], body["last_message"]) == (0, 0, None)
    again = await embedded.post(C, json={"kind": "direct", "user_id": bob.id}, headers=alice.auth)
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    # Either order, and the id may be a JSON number.
    reverse = await embedded.post(
        C, json={"kind": "direct", "user_id": int(alice.id)}, headers=bob.auth
    )
    assert (reverse.status_code, reverse.json()["id"]) == (200, body["id"])


async def test_create_refusals_name_the_field(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people

    async def create(body: object) -> httpx.Response:
        return await embedded.post(C, json=body, headers=alice.auth)

    assert "user_id" in fields(await create({"kind": "direct", "user_id": alice.id}))
    assert "user_id" in fields(await create({"kind": "direct", "user_id": "987654321"}))
    assert "user_id" in fields(await create({"kind": "direct"}))
    assert "title" in fields(await create({"kind": "direct", "user_id": bob.id, "title": "x"}))
    assert "kind" in fields(await create({"kind": "channel", "user_id": bob.id}))
    assert "kind" in fields(await create({"user_id": bob.id}))
    assert "title" in fields(await create({"kind": "group", "members": [bob.id]}))
    assert "title" in fields(await create({"kind": "group", "title": "", "members": []}))
    assert "title" in fields(await create({"kind": "group", "title": "   ", "members": []}))
    assert "title" in fields(await create({"kind": "group", "title": "x" * 41, "members": []}))
    assert "members" in fields(await create({"kind": "group", "title": "t", "members": ["999"]}))
    assert "surprise" in fields(await create({"kind": "direct", "user_id": bob.id, "surprise": 1}))
    malformed = await embedded.post(
        C, content=b"{not json", headers={**alice.auth, "content-type": "application/json"}
    )
    assert malformed.status_code == 400


async def test_group_owner_rules(embedded: httpx.AsyncClient, people: list[Person]) -> None:
    alice, bob, carol = people
    created = await group(embedded, alice, [bob], title="  <b>Trip</b> ")
    assert created["owner_id"] == alice.id
    assert created["members"] == [alice.id, bob.id]
    assert "<b>" not in created["title"] and "Trip" in created["title"]
    path = f"{C}/{created['id']}"

    renamed = await embedded.patch(path, json={"title": "Trip 2"}, headers=bob.auth)
    assert renamed.status_code == 403, renamed.text
    renamed = await embedded.patch(path, json={"title": "Trip 2"}, headers=alice.auth)
    assert (renamed.status_code, renamed.json()["title"]) == (200, "Trip 2")
    assert "title" in fields(await embedded.patch(path, json={"title": ""}, headers=alice.auth))

    added = await embedded.post(f"{path}/members", json={"user_ids": [carol.id]}, headers=bob.auth)
    assert added.status_code == 403
    assert (await embedded.get(path, headers=carol.auth)).status_code == 404
    added = await embedded.post(
        f"{path}/members", json={"user_ids": [carol.id]}, headers=alice.auth
    )
    assert added.status_code == 200 and carol.id in added.json()["members"]
    assert "user_ids" in fields(
        await embedded.post(f"{path}/members", json={"user_ids": []}, headers=alice.auth)
    )

    removed = await embedded.delete(f"{path}/members/{bob.id}", headers=carol.auth)
    assert removed.status_code == 403
    left = await embedded.delete(f"{path}/members/{carol.id}", headers=carol.auth)
    assert left.status_code == 200 and carol.id not in left.json()["members"]
    assert (await embedded.get(path, headers=carol.auth)).status_code == 404
    kicked = await embedded.delete(f"{path}/members/{bob.id}", headers=alice.auth)
    assert kicked.status_code == 200 and kicked.json()["members"] == [alice.id]

    one_to_one = await direct(embedded, alice, bob)
    refused = await embedded.delete(f"{C}/{one_to_one['id']}/members/{bob.id}", headers=alice.auth)
    assert refused.status_code == 422
    rename_direct = await embedded.patch(
        f"{C}/{one_to_one['id']}", json={"title": "x"}, headers=alice.auth
    )
    assert rename_direct.status_code in (403, 422)


async def test_details_describe_the_members(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people
    conversation = await group(embedded, alice, [bob])
    response = await embedded.get(f"{C}/{conversation['id']}", headers=bob.auth)
    assert response.status_code == 200, response.text
    users = {u["id"]: u for u in response.json()["users"]}
    assert set(users) == {alice.id, bob.id}
    assert users[alice.id]["login"] == alice.login


@pytest.mark.parametrize(
    "bad", ["x", "A" * 32, "0" * 31, "0" * 65, "%2e%2e", "1;drop", "ünïcode", "a" * 1000]
)
async def test_ids_that_are_not_ours_are_404(
    embedded: httpx.AsyncClient, people: list[Person], bad: str
) -> None:
    alice, bob, _ = people
    real = (await direct(embedded, alice, bob))["id"]
    message = (await send(embedded, alice, real, "hi"))["id"]
    for method, path, body in [
        ("GET", f"{C}/{bad}", None),
        ("PATCH", f"{C}/{bad}", {"title": "t"}),
        ("POST", f"{C}/{bad}/messages", {"client_id": "c", "text": "t"}),
        ("GET", f"{C}/{bad}/messages", None),
        ("POST", f"{C}/{bad}/read", {"seq": 1}),
        ("PATCH", f"{C}/{real}/messages/{bad}", {"text": "t"}),
        ("DELETE", f"{C}/{real}/messages/{bad}", None),
        ("PATCH", f"{C}/{bad}/messages/{message}", {"text": "t"}),
        ("GET", f"/api/v1/media/{bad}", None),
    ]:
        response = await embedded.request(method, path, json=body, headers=alice.auth)
        assert response.status_code == 404, (method, path, response.text)
        assert "error" in response.json()


async def test_strangers_and_unknown_ids_get_404(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, carol = people
    conversation = (await direct(embedded, alice, bob))["id"]
    message = (await send(embedded, alice, conversation, "private"))["id"]
    for who, cid in ((carol, conversation), (alice, unknown_id())):
        for method, path, body in [
            ("GET", f"{C}/{cid}", None),
            ("POST", f"{C}/{cid}/messages", {"client_id": "c1", "text": "hi"}),
            ("GET", f"{C}/{cid}/messages", None),
            ("PATCH", f"{C}/{cid}/messages/{message}", {"text": "x"}),
            ("DELETE", f"{C}/{cid}/messages/{message}", None),
            ("POST", f"{C}/{cid}/read", {"seq": 1}),
            ("POST", f"{C}/{cid}/members", {"user_ids": [who.id]}),
            ("DELETE", f"{C}/{cid}/members/{who.id}", None),
        ]:
            response = await embedded.request(method, path, json=body, headers=who.auth)
            assert response.status_code == 404, (who.login, method, path, response.text)
    edit = await embedded.patch(
        f"{C}/{conversation}/messages/{unknown_id()}", json={"text": "x"}, headers=alice.auth
    )
    assert edit.status_code == 404


async def test_list_conversations_newest_activity_first_with_cursor(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, carol = people
    with_bob = (await direct(embedded, alice, bob))["id"]
    with_carol = (await direct(embedded, alice, carol))["id"]
    team = (await group(embedded, alice, [bob, carol]))["id"]
    await send(embedded, bob, with_bob, "latest")  # with_bob is now the most recent

    first = await embedded.get(C, params={"limit": 2}, headers=alice.auth)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [c["id"] for c in page["conversations"]] == [with_bob, team]
    assert page["conversations"][0]["unread"] == 1
    assert page["conversations"][0]["last_message"]["text"] == "latest"
    rest = await embedded.get(
        C, params={"limit": 2, "cursor": page["next_cursor"]}, headers=alice.auth
    )
    assert [c["id"] for c in rest.json()["conversations"]] == [with_carol]
    assert rest.json()["next_cursor"] is None

    carols = (await embedded.get(C, headers=carol.auth)).json()["conversations"]
    assert {c["id"] for c in carols} == {with_carol, team}
    assert "cursor" in fields(await embedded.get(C, params={"cursor": "junk!"}, headers=alice.auth))
    assert "limit" in fields(await embedded.get(C, params={"limit": 0}, headers=alice.auth))
    assert "limit" in fields(await embedded.get(C, params={"limit": 101}, headers=alice.auth))


async def test_send_is_idempotent_per_client_id(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people
    conversation = (await direct(embedded, alice, bob))["id"]
    path = f"{C}/{conversation}/messages"
    body = {"client_id": "phone-1:42", "text": "Hello <script>alert(1)</script>Bob"}
    first = await embedded.post(path, json=body, headers=alice.auth)
    assert first.status_code == 201, first.text
    stored = first.json()
    assert stored["created"] is True
    message = stored["message"]
    assert (message["seq"], message["author_id"], message["kind"]) == (1, alice.id, "text")
    assert "<script" not in message["text"] and "Hello" in message["text"]

    replay = await embedded.post(path, json={**body, "text": "changed?"}, headers=alice.auth)
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"message": message, "created": False}
    # The same client id from another author is another message.
    other = await embedded.post(path, json=body, headers=bob.auth)
    assert other.status_code == 201 and other.json()["message"]["seq"] == 2
    listed = (await embedded.get(path, headers=alice.auth)).json()["messages"]
    assert [m["seq"] for m in listed] == [1, 2]
    # Counted once for Alice; Bob's own send moved his read cursor past both.
    assert (await embedded.get("/api/v1/unread", headers=alice.auth)).json()["total"] == 1
    assert (await embedded.get("/api/v1/unread", headers=bob.auth)).json()["total"] == 0


async def test_send_refusals_name_the_field(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people
    path = f"{C}/{(await direct(embedded, alice, bob))['id']}/messages"

    async def refused(body: object) -> dict[str, str]:
        return fields(await embedded.post(path, json=body, headers=alice.auth))

    assert "client_id" in await refused({"client_id": "has space", "text": "x"})
    assert "client_id" in await refused({"client_id": "x" * 65, "text": "x"})
    assert "client_id" in await refused({"text": "x"})
    assert "text" in await refused({"client_id": "c1"})
    assert "media_id" in await refused({"client_id": "c1", "text": "x", "media_id": "a" * 32})
    assert "text" in await refused({"client_id": "c1", "text": "   "})
    assert "text" in await refused({"client_id": "c1", "text": "<b></b>"})
    assert "text" in await refused({"client_id": "c1", "text": "x" * 201})
    assert "text" in await refused({"client_id": "c1", "text": 5})
    assert "media_id" in await refused({"client_id": "c1", "media_id": unknown_id()})
    # Nothing was stored by any of them.
    assert (await embedded.get(path, headers=alice.auth)).json()["messages"] == []


async def test_paging_both_ways(embedded: httpx.AsyncClient, people: list[Person]) -> None:
    alice, bob, _ = people
    conversation = (await direct(embedded, alice, bob))["id"]
    for n in range(1, 8):
        await send(embedded, alice if n % 2 else bob, conversation, f"m{n}")
    path = f"{C}/{conversation}/messages"

    async def page(**params: int) -> tuple[list[int], bool]:
        response = await embedded.get(path, params=params, headers=bob.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        return [m["seq"] for m in body["messages"]], body["has_more"]

    assert await page(limit=3) == ([5, 6, 7], True)
    assert await page(before=5, limit=3) == ([2, 3, 4], True)
    assert await page(before=2, limit=3) == ([1], False)
    assert await page(after=0, limit=3) == ([1, 2, 3], True)
    assert await page(after=3, limit=3) == ([4, 5, 6], True)
    assert await page(after=6, limit=3) == ([7], False)
    assert await page(after=7) == ([], False)
    assert await page() == ([1, 2, 3, 4, 5, 6, 7], False)
    both = await embedded.get(path, params={"before": 5, "after": 1}, headers=bob.auth)
    assert both.status_code == 422
    for params in ({"limit": 0}, {"limit": 101}, {"before": -1}, {"after": "x"}):
        assert (await embedded.get(path, params=params, headers=bob.auth)).status_code == 422


async def test_edit_and_delete_are_the_authors(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, _ = people
    conversation = (await direct(embedded, alice, bob))["id"]
    message = await send(embedded, alice, conversation, "first draft")
    path = f"{C}/{conversation}/messages/{message['id']}"

    assert (
        await embedded.patch(path, json={"text": "hijack"}, headers=bob.auth)
    ).status_code == 403
    assert (await embedded.delete(path, headers=bob.auth)).status_code == 403
    assert "text" in fields(await embedded.patch(path, json={"text": " "}, headers=alice.auth))
    assert "text" in fields(await embedded.patch(path, json={}, headers=alice.auth))

    edited = await embedded.patch(path, json={"text": "final"}, headers=alice.auth)
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["text"], body["seq"]) == ("final", 1)
    assert body["version"] > message["version"] and body["edited_at"] is not None

    deleted = await embedded.delete(path, headers=alice.auth)
    assert deleted.status_code == 200, deleted.text
    tombstone = deleted.json()
    assert tombstone["deleted"] is True and tombstone["text"] is None
    assert tombstone["version"] > body["version"]
    again = await embedded.delete(path, headers=alice.auth)
    assert (again.status_code, again.json()) == (200, tombstone)
    conflict = await embedded.patch(path, json={"text": "back?"}, headers=alice.auth)
    assert conflict.status_code == 409, conflict.text
    listed = (await embedded.get(f"{C}/{conversation}/messages", headers=bob.auth)).json()
    assert [(m["seq"], m["deleted"], m["text"]) for m in listed["messages"]] == [(1, True, None)]


async def test_read_cursors_and_unread_counts(
    embedded: httpx.AsyncClient, people: list[Person]
) -> None:
    alice, bob, carol = people
    with_bob = (await direct(embedded, alice, bob))["id"]
    team = (await group(embedded, carol, [bob]))["id"]
    for text in ("one", "two", "three"):
        await send(embedded, alice, with_bob, text)
    await send(embedded, bob, team, "own messages are never unread")
    await send(embedded, carol, team, "hello team")

    unread = (await embedded.get("/api/v1/unread", headers=bob.auth)).json()
    assert unread["total"] == 4
    assert unread["conversations"][with_bob] == 3 and unread["conversations"][team] == 1
    assert (await embedded.get("/api/v1/unread", headers=alice.auth)).json()["total"] == 0

    read = f"{C}/{with_bob}/read"
    receipt = await embedded.post(read, json={"seq": 2}, headers=bob.auth)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json() == {
        "conversation_id": with_bob,
        "user_id": bob.id,
        "read_seq": 2,
        "unread": 1,
    }
    back = await embedded.post(read, json={"seq": 1}, headers=bob.auth)
    assert back.json()["read_seq"] == 2  # never moves back
    past = await embedded.post(read, json={"seq": 1000}, headers=bob.auth)
    assert (past.json()["read_seq"], past.json()["unread"]) == (3, 0)
    assert "seq" in fields(await embedded.post(read, json={"seq": -1}, headers=bob.auth))
    assert "seq" in fields(await embedded.post(read, json={}, headers=bob.auth))

    unread = (await embedded.get("/api/v1/unread", headers=bob.auth)).json()
    assert unread["total"] == 1 and unread["conversations"].get(with_bob, 0) == 0
    summary = (await embedded.get(f"{C}/{with_bob}", headers=bob.auth)).json()
    assert (summary["read_seq"], summary["unread"]) == (3, 0)


async def test_message_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, database_url: str
) -> None:
    settings = api_settings(tmp_path, messaging_messages_per_hour=3)
    async with embedded_client(settings, database_url) as client:
        alice, bob = await sign_up(client, 2)
        path = f"{C}/{(await direct(client, alice, bob))['id']}/messages"
        for n in range(3):
            sent = await client.post(
                path, json={"client_id": f"c{n}", "text": "hi"}, headers=alice.auth
            )
            assert sent.status_code == 201, sent.text
        # A replay of a stored message is not a new message: still answered.
        replay = await client.post(path, json={"client_id": "c0", "text": "hi"}, headers=alice.auth)
        assert replay.status_code == 200
        blocked = await client.post(
            path, json={"client_id": uuid.uuid4().hex, "text": "hi"}, headers=alice.auth
        )
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["retry-after"]) > 0
        # Bob has his own budget.
        other = await client.post(path, json={"client_id": "b1", "text": "hi"}, headers=bob.auth)
        assert other.status_code == 201
        listed = (await client.get(path, headers=bob.auth)).json()["messages"]
        assert len(listed) == 4
