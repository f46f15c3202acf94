"""The first-page cache of `GET /api/publications` keeps every rule of the route.

A write is seen by its owner's very next read (also from another instance sharing
Redis), a page read before a write committed is never served after it, the page is
never served to another user, to a user no longer connected or with a revoked token.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from agora.adapters.cache_redis import RedisCache
from agora.services.publications.deps import PublicationsServices
from agora.services.publications.page_cache import PublicationPageCache, page_key, version_key
from tests.service.publications_stack import OpenStack, Stack, new_user
from tests.support.services import drop_namespace


async def connected(stack: Stack) -> tuple[str, dict[str, str]]:
    user = new_user()
    await stack.connect(user)
    return user, stack.auth(user)


async def titles(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/api/publications", headers=headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["publications"]]


async def post(client: httpx.AsyncClient, headers: dict[str, str], title: str) -> dict[str, Any]:
    response = await client.post(
        "/api/publications", json={"title": title, "body": ""}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_read_is_cached_and_each_write_is_seen_by_the_next_read(stack: Stack) -> None:
    user, headers = await connected(stack)
    first = await post(stack.client, headers, "one")
    assert await titles(stack.client, headers) == ["one"]
    assert await stack.backends.cache.get(page_key(user, 20)) is not None  # cached
    assert await titles(stack.client, headers) == ["one"]  # answered from the cache

    second = await post(stack.client, headers, "two")
    assert await titles(stack.client, headers) == ["two", "one"]
    patched = await stack.client.patch(
        f"/api/publications/{first['id']}", json={"title": "uno"}, headers=headers
    )
    assert patched.status_code == 200
    assert await titles(stack.client, headers) == ["two", "uno"]
    deleted = await stack.client.delete(f"/api/publications/{second['id']}", headers=headers)
    assert deleted.status_code == 204
    assert await titles(stack.client, headers) == ["uno"]


async def test_a_page_read_before_a_write_committed_is_never_served_after_it(
    stack: Stack,
) -> None:
    user, headers = await connected(stack)
    await post(stack.client, headers, "old")
    pages = stack.app.provided(PublicationsServices).publications.pages
    assert pages is not None
    # A reader read the version, then the rows (before the write below committed)...
    version = await stack.backends.cache.get(version_key(user))
    stale = orjson.dumps({"publications": [], "next_cursor": None})
    await post(stack.client, headers, "new")  # ...the write commits and answers...
    await pages.store(user, 20, version or b"", stale)  # ...then the reader stores
    assert await titles(stack.client, headers) == ["new", "old"]


async def test_the_cached_page_is_only_its_owners(stack: Stack) -> None:
    _, alice = await connected(stack)
    _, bob = await connected(stack)
    await post(stack.client, alice, "alice-own")
    await post(stack.client, bob, "bob-own")
    for _ in range(2):  # the second round answers from the cache
        assert await titles(stack.client, alice) == ["alice-own"]
        assert await titles(stack.client, bob) == ["bob-own"]


async def test_a_cached_page_is_not_served_once_disconnected_or_revoked(stack: Stack) -> None:
    user, headers = await connected(stack)
    await post(stack.client, headers, "mine")
    assert await titles(stack.client, headers) == ["mine"]  # now cached
    await stack.deliver({"event": "disconnected", "user_id": user})
    response = await stack.client.get("/api/publications", headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "Forbidden", "reason": "inactive_user"}
    assert "resource.forbidden" in await stack.audits(user)

    await stack.connect(user)
    assert await titles(stack.client, headers) == ["mine"]
    token = headers["Authorization"].removeprefix("Bearer ")
    await stack.app.context.revocations.revoke(stack.app.context.tokens.verify(token))
    response = await stack.client.get("/api/publications", headers=headers)
    assert response.status_code == 401


async def test_a_later_page_and_a_zero_ttl_do_not_use_the_cache(open_stack: OpenStack) -> None:
    stack = await open_stack(publication_page_cache_ttl=0)
    user, headers = await connected(stack)
    await post(stack.client, headers, "one")
    assert await titles(stack.client, headers) == ["one"]
    assert await stack.backends.cache.get(page_key(user, 20)) is None
    assert stack.app.provided(PublicationsServices).listing.pages is None


def test_an_entry_tagged_with_another_version_is_a_miss() -> None:
    found = PublicationPageCache.found(b"v2", b"v1\n{}")
    assert found.body is None and found.version == b"v2"
    assert PublicationPageCache.found(b"v2", b"v2\n{}").body == b"{}"
    assert PublicationPageCache.found(None, b"\n{}").body == b"{}"  # no version yet
    assert PublicationPageCache.found(None, b"v1\n{}").body is None
    assert PublicationPageCache.found(b"v1", b"garbage").body is None


async def test_a_write_on_one_instance_is_seen_by_the_next_read_on_another(
    open_stack: OpenStack, redis_url: str, redis_namespace: str
) -> None:
    """Two instances (two workers) sharing Redis and the database."""
    try:
        one = await open_stack(cache=RedisCache(redis_url, namespace=redis_namespace))
        two = await open_stack(cache=RedisCache(redis_url, namespace=redis_namespace))
        _, headers = await connected(one)
        await post(one.client, headers, "first")
        assert await titles(two.client, headers) == ["first"]  # cached, in Redis
        assert await titles(one.client, headers) == ["first"]
        await post(one.client, headers, "second")
        assert await titles(two.client, headers) == ["second", "first"]
    finally:
        await drop_namespace(redis_url, redis_namespace)


async def test_the_list_query_is_checked_strictly(stack: Stack) -> None:
    """The route reads `limit` itself: only ASCII digits, 1 to 100, a short cursor."""
    _, headers = await connected(stack)
    for limit in ("1_0", " 7", "\u0661", "+5", "-1", "0", "101", "99999"):
        response = await stack.client.get(
            "/api/publications", params={"limit": limit}, headers=headers
        )
        assert response.status_code == 422, limit
        assert response.json()["fields"].keys() == {"limit"}
    response = await stack.client.get("/api/publications", params={"limit": "7"}, headers=headers)
    assert response.status_code == 200
