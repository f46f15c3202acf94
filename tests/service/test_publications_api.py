"""Publications service, HTTP side: 401/403 order, the owner's CRUD, paging, XSS, bad ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import httpx
import jwt
from sqlalchemy import update

from agora.db.engine import utcnow
from agora.services.publications.models import PubUser
from tests.service.publications_stack import OpenStack, Stack, UnreachableCache, new_user
from tests.support.settings import TEST_SECRET
from tests.support.users import register_and_login
from tests.support.waiting import eventually

ITEM_KEYS = {"id", "title", "body", "created_at", "updated_at"}


async def connected_user(stack: Stack) -> tuple[str, dict[str, str]]:
    user = new_user()
    await stack.connect(user)
    return user, stack.auth(user)


async def post(stack: Stack, headers: dict[str, str], title: str, body: str = "") -> dict:
    response = await stack.client.post(
        "/api/publications", json={"title": title, "body": body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_login_event_then_read_then_logout(embedded: httpx.AsyncClient) -> None:
    """The whole flow in one process: the auth outbox relay publishes, the consumer applies."""
    user, token = await register_and_login(embedded)
    headers = {"Authorization": f"Bearer {token}"}

    async def active() -> bool:
        response = await embedded.get("/api/publications", headers=headers)
        assert response.status_code in (200, 403), response.text
        return response.status_code == 200

    await eventually(active)
    created = await embedded.post(
        "/api/publications", json={"title": "Hello", "body": "<p>First</p>"}, headers=headers
    )
    assert created.status_code == 201
    listed = (await embedded.get("/api/publications", headers=headers)).json()
    assert [p["id"] for p in listed["publications"]] == [created.json()["id"]]
    assert listed["next_cursor"] is None

    assert (await embedded.post("/auth/api/logout", headers=headers)).status_code == 200

    async def refused() -> bool:
        response = await embedded.get("/api/publications", headers=headers)
        return response.status_code in (401, 403)

    await eventually(refused)
    assert user["id"]


async def test_the_first_read_after_login_is_answered_at_once(
    embedded: httpx.AsyncClient,
) -> None:
    """Issue 10 §4, in one process: the login event need not have been applied yet."""
    for _ in range(5):
        _, token = await register_and_login(embedded)
        first = await embedded.get(
            "/api/publications", headers={"Authorization": f"Bearer {token}"}
        )
        assert first.status_code == 200, first.text


async def test_token_problems_are_401_before_anything_else(stack: Stack) -> None:
    now = int(time.time())
    expired = jwt.encode(
        {
            "sub": "1",
            "user_id": "1",
            "iss": "agora-auth",
            "aud": "agora",
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
            "jti": "j",
            "typ": "access",
        },
        TEST_SECRET,
    )
    cases = {
        None: "Token required",
        "Bearer not.a.jwt": "Invalid token",
        f"Bearer {expired}": "Token expired",
        f"Bearer {stack.token('1')[:-3]}xyz": "Invalid token",
    }
    for header, message in cases.items():
        headers = {"Authorization": header} if header else {}
        for method, path in (
            ("GET", "/api/publications"),
            ("GET", "/api/publications/1"),
            ("DELETE", "/api/publications/1"),
        ):
            response = await stack.client.request(method, path, headers=headers)
            assert response.status_code == 401, (header, path)
            assert response.json() == {"error": message}
            assert response.headers["www-authenticate"].startswith("Bearer")


INACTIVE = {"error": "Forbidden", "reason": "inactive_user"}


async def test_a_user_who_is_not_connected_is_forbidden(stack: Stack) -> None:
    user, headers = await connected_user(stack)  # a token issued before the disconnect
    assert (await stack.client.get("/api/publications", headers=headers)).status_code == 200
    await stack.deliver({"event": "disconnected", "user_id": user})
    for method in ("GET", "POST"):
        response = await stack.client.request(
            method, "/api/publications", headers=headers, json={"title": "t"}
        )
        assert response.status_code == 403, method
        assert response.json() == INACTIVE
    assert (await stack.client.get("/api/publications/1", headers=headers)).status_code == 403
    assert "resource.forbidden" in await stack.audits(user)


def token_issued(user_id: str, at: float) -> dict[str, str]:
    """A valid access token of `user_id` whose `iat` is `at`."""
    claims = {"sub": user_id, "user_id": user_id, "iss": "agora-auth", "aud": "agora"}
    claims |= {"iat": int(at), "nbf": int(at), "exp": int(at) + 3600, "typ": "access"}
    token = jwt.encode({**claims, "jti": uuid.uuid4().hex}, TEST_SECRET)
    return {"Authorization": f"Bearer {token}"}


async def backdate_status_change(stack: Stack, user_id: str, seconds: float) -> float:
    """Move the recorded disconnect `seconds` into the past; returns its new time."""
    at = utcnow() - timedelta(seconds=seconds)
    async with stack.db.transaction() as session:
        await session.execute(
            update(PubUser).where(PubUser.user_id == user_id).values(updated_at=at)
        )
    return at.timestamp()


async def test_a_token_of_a_login_whose_event_is_not_in_yet_is_let_in(stack: Stack) -> None:
    """Login writes its event, then issues the token: a token newer than the last
    disconnect (or with none at all) is a live session, event or not (issue 10 §4)."""
    fresh = new_user()  # no event ever arrived for this user
    response = await stack.client.get("/api/publications", headers=stack.auth(fresh))
    assert response.status_code == 200, response.text
    assert await stack.row(fresh) is None  # nothing written: the event will do it

    user, _ = await connected_user(stack)
    await stack.deliver({"event": "disconnected", "user_id": user})
    disconnected_at = await backdate_status_change(stack, user, 10)
    new = token_issued(user, disconnected_at + 2)  # a login after the logout
    assert (await stack.client.get("/api/publications", headers=new)).status_code == 200
    before = token_issued(user, disconnected_at - 2)
    assert (await stack.client.get("/api/publications", headers=before)).json() == INACTIVE
    # The login event, when it comes, still applies; then every token is in again.
    await stack.connect(user)
    assert (await stack.row(user)).connected  # type: ignore[union-attr]
    assert (await stack.client.get("/api/publications", headers=before)).status_code == 200


async def test_a_user_swept_idle_is_refused_until_a_new_login(stack: Stack) -> None:
    user, old = await connected_user(stack)
    await stack.set_activity(user, 7200)
    assert user in await stack.status.sweep_idle()
    assert (await stack.client.get("/api/publications", headers=old)).json() == INACTIVE
    swept_at = await backdate_status_change(stack, user, 10)
    issued_before = token_issued(user, swept_at - 1)
    assert (await stack.client.get("/api/publications", headers=issued_before)).status_code == 403
    issued_after = token_issued(user, swept_at + 1)
    assert (await stack.client.get("/api/publications", headers=issued_after)).status_code == 200


async def test_a_cache_miss_falls_back_to_the_database_and_refills(stack: Stack) -> None:
    user, headers = await connected_user(stack)
    await stack.backends.cache.delete(f"user:{user}")
    assert (await stack.client.get("/api/publications", headers=headers)).status_code == 200
    assert (await stack.cached(user) or {}).get("status") == "connected"


async def test_reads_answer_from_the_database_when_the_cache_is_down(
    open_stack: OpenStack,
) -> None:
    down = await open_stack(cache=UnreachableCache())
    user, headers = await connected_user(down)
    created = await post(down, headers, "Still here")
    listed = await down.client.get("/api/publications", headers=headers)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["publications"]] == [created["id"]]
    await down.deliver({"event": "disconnected", "user_id": user})
    assert (await down.client.get("/api/publications", headers=headers)).status_code == 403


async def test_pages_newest_first_with_a_cursor(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    ids = [(await post(stack, headers, f"post {n}"))["id"] for n in range(25)]
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (await stack.client.get("/api/publications", params=params, headers=headers)).json()
        sizes.append(len(page["publications"]))
        seen += [p["id"] for p in page["publications"]]
        assert all(set(p) == ITEM_KEYS for p in page["publications"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == list(reversed(ids))
    default = (await stack.client.get("/api/publications", headers=headers)).json()
    assert len(default["publications"]) == 20


async def test_limit_and_cursor_are_validated(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    for params in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "abc"},
        {"cursor": "bogus!"},
        {"cursor": "cDphYmM"},
        {"cursor": "x" * 65},
    ):
        response = await stack.client.get("/api/publications", params=params, headers=headers)
        assert response.status_code == 422, params
        assert "error" in response.json()
    ok = await stack.client.get("/api/publications", params={"limit": "100"}, headers=headers)
    assert ok.status_code == 200


async def test_only_the_owner_sees_changes_or_deletes(stack: Stack) -> None:
    _, alice = await connected_user(stack)
    _, bob = await connected_user(stack)
    mine = await post(stack, alice, "Alice's", "text")
    assert set(mine) == ITEM_KEYS and mine["id"].isdigit()
    path = f"/api/publications/{mine['id']}"
    for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
        response = await stack.client.request(method, path, json=body, headers=bob)
        assert response.status_code == 404, method
        assert response.json() == {"error": "Not found"}
    bobs_list = (await stack.client.get("/api/publications", headers=bob)).json()
    assert bobs_list["publications"] == []

    got = await stack.client.get(path, headers=alice)
    assert got.json() == mine
    patched = await stack.client.patch(path, json={"body": "edited"}, headers=alice)
    assert patched.status_code == 200
    assert patched.json()["title"] == "Alice&#x27;s" and patched.json()["body"] == "edited"
    assert patched.json()["updated_at"] >= mine["updated_at"]
    assert (await stack.client.delete(path, headers=alice)).status_code == 204
    assert (await stack.client.get(path, headers=alice)).status_code == 404
    assert (await stack.client.delete(path, headers=alice)).status_code == 404


async def test_markup_is_stored_safely(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    created = await post(
        stack,
        headers,
        "<script>alert(1)</script>Hi <b>there</b> & you",
        '<p onclick="x()">ok</p><img src=x onerror=alert(1)><script>alert(2)</script>'
        '<a href="javascript:alert(3)">bad</a><a href="https://example.com">good</a>'
        "<iframe src=//evil></iframe><style>*{}</style>",
    )
    assert created["title"] == "Hi there &amp; you"
    assert created["body"].startswith("<p>ok</p>")
    assert '<a href="https://example.com" rel="noopener noreferrer">good</a>' in created["body"]
    patched = await stack.client.patch(
        f"/api/publications/{created['id']}",
        json={"body": "<svg onload=alert(4)></svg><b>bold</b>"},
        headers=headers,
    )
    stored = await stack.client.get(f"/api/publications/{created['id']}", headers=headers)
    for text in (str(created), patched.text, stored.text):
        for bad in (
            "<script",
            "onerror",
            "onclick",
            "onload",
            "javascript:",
            "<iframe",
            "<style",
            "<img",
            "<svg",
        ):
            assert bad not in text.lower(), (bad, text)
    assert stored.json()["body"] == "<b>bold</b>"
    only_markup = await stack.client.post(
        "/api/publications", json={"title": "<script>x</script>"}, headers=headers
    )
    assert only_markup.status_code == 422


async def test_malformed_ids_are_404_never_500(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    for raw in (
        "abc",
        "1e9999",
        "-1",
        "0",
        "1.5",
        "99999999999999999999",
        "2147483648",
        "%20",
        "1;DROP TABLE publications",
        "\uff11",
    ):
        for method in ("GET", "PATCH", "DELETE"):
            response = await stack.client.request(
                method, f"/api/publications/{raw}", json={"title": "t"}, headers=headers
            )
            assert response.status_code == 404, (raw, method, response.text)
            assert response.json() == {"error": "Not found"}


async def test_bad_bodies_are_clear_client_errors(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    cases = [
        ({"title": ""}, 422),
        ({"title": "t" * 201}, 422),
        ({"title": "t", "body": "b" * 10_001}, 422),
        ({"title": "t", "author": "someone else"}, 422),
        ({"body": "no title"}, 422),
        ({"title": 5}, 422),
    ]
    for body, status in cases:
        response = await stack.client.post("/api/publications", json=body, headers=headers)
        assert response.status_code == status, body
        assert "error" in response.json()
    broken = await stack.client.post(
        "/api/publications",
        content=b"{nope",
        headers={**headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400
    created = await post(stack, headers, "t" * 200, "b" * 10_000)
    empty_patch = await stack.client.patch(
        f"/api/publications/{created['id']}", json={}, headers=headers
    )
    assert empty_patch.status_code == 422


async def test_many_concurrent_reads_stay_correct(stack: Stack) -> None:
    _, headers = await connected_user(stack)
    await post(stack, headers, "one")
    answers = await asyncio.gather(
        *(stack.client.get("/api/publications", headers=headers) for _ in range(30))
    )
    assert {a.status_code for a in answers} == {200}
