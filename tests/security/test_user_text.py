"""One policy for user text (core/text.py, docs/security.md "User text"), tried as an
attacker would over HTTP and gRPC, on SQLite and PostgreSQL: a control character is a
422 in every text field (a NUL was a 500 on PostgreSQL, with the password hash in the
traceback), display names are safe text on every door, safe text is safe inside a
quoted attribute, and publication links keep only http(s) and mailto targets."""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from agora.core.text import safe_html, safe_text, shown
from agora.grpc.stubs import users_pb2, users_pb2_grpc
from agora.services.auth.models import User
from tests.security.support import Session, new_session, wait_active
from tests.support.grpc_servers import bearer, running_auth
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, register_and_login, unique_login

# NUL (PostgreSQL text cannot hold it), ESC (terminal escapes), DEL, a C1 control, and the
# bidi override that reorders what a reader sees ("Trojan Source").
CONTROLS = ["\x00", "\x1b", "\x7f", "\x85", "\u202e", "\u2066"]
XSS_NAME = '<img src=x onerror=alert(1)>Eve "the" O\'Neil & co'
XSS_NAME_SAFE = "Eve &quot;the&quot; O&#x27;Neil &amp; co"


def _register_body(**fields: str) -> dict[str, str]:
    login = unique_login("txt")
    body = {"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": "A"}
    return {**body, **fields}


def assert_422(response: httpx.Response) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.json()["error"] == "Validation failed"


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
async def test_a_control_character_is_a_422_in_every_account_field(
    embedded: httpx.AsyncClient, control: str
) -> None:
    for field in ("name", "login", "email"):
        body = _register_body()
        body[field] = body[field][:2] + control + body[field][2:]
        assert_422(await embedded.post("/auth/api/register", json=body))
    # Login: JSON and the older clients' form; nothing reaches the database or the hash.
    refused = {"login": f"ad{control}min", "password": "whatever1"}
    assert_422(await embedded.post("/auth/api/login", json=refused))
    assert_422(await embedded.post("/auth/api/login", data=refused))


@pytest.fixture
async def session(embedded: httpx.AsyncClient) -> Session:
    session = await new_session(embedded)
    await wait_active(embedded, session)
    return session


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
async def test_a_control_character_is_a_422_in_publications_and_messages(
    embedded: httpx.AsyncClient, session: Session, control: str
) -> None:
    headers = session.bearer
    for body in ({"title": f"a{control}b"}, {"title": "t", "body": f"<p>a{control}b</p>"}):
        assert_422(await embedded.post("/api/publications", json=body, headers=headers))
    created = await embedded.post("/api/publications", json={"title": "t"}, headers=headers)
    assert created.status_code == 201, created.text
    path = f"/api/publications/{created.json()['id']}"
    assert_422(await embedded.patch(path, json={"title": f"x{control}"}, headers=headers))
    assert (await embedded.get(path, headers=headers)).json()["title"] == "t"  # nothing lost

    group = {"kind": "group", "title": f"Team{control}", "members": []}
    assert_422(await embedded.post("/api/v1/conversations", json=group, headers=headers))
    group["title"] = "Team"
    made = await embedded.post("/api/v1/conversations", json=group, headers=headers)
    assert made.status_code == 201, made.text
    messages = f"/api/v1/conversations/{made.json()['id']}/messages"
    text = {"client_id": uuid.uuid4().hex, "text": f"hello{control}world"}
    assert_422(await embedded.post(messages, json=text, headers=headers))
    # A newline stays allowed in multi-line text (messages, bodies), not in titles.
    text = {"client_id": uuid.uuid4().hex, "text": "hello\nworld"}
    assert (await embedded.post(messages, json=text, headers=headers)).status_code == 201
    retitle = {"title": "two\nlines"}
    assert_422(await embedded.patch(messages.rsplit("/", 1)[0], json=retitle, headers=headers))


async def test_display_names_are_safe_text_over_rest(embedded: httpx.AsyncClient) -> None:
    created = await embedded.post("/auth/api/register", json=_register_body(name=XSS_NAME))
    assert created.status_code == 201, created.text
    assert created.json()["name"] == XSS_NAME_SAFE
    logged = await embedded.post(
        "/auth/api/login", json={"login": created.json()["login"], "password": PASSWORD}
    )
    assert logged.json()["user"]["name"] == XSS_NAME_SAFE
    # Nothing left once the markup is gone: refused, not an empty name.
    assert_422(
        await embedded.post("/auth/api/register", json=_register_body(name="<script>x</script>"))
    )


@pytest.fixture
async def auth_grpc(tmp_path: Path, database_url: str) -> AsyncIterator[Any]:
    async with running_auth(make_settings(tmp_path, database_url=database_url)) as running:
        yield running


async def test_display_names_are_safe_text_over_grpc_even_if_stored_raw(auth_grpc: Any) -> None:
    """GetUser and BatchGetUsers, with grpcio's generated client; a name stored raw by
    an older release (written straight into the table) is shown safe as well."""
    login = unique_login("grpcname")
    user, token = await register_and_login(auth_grpc.http, login)
    database = auth_grpc.app("auth").context.backends.database
    async with database.transaction() as db_session:
        await db_session.execute(update(User).where(User.login == login).values(name=XSS_NAME))
    stub = users_pb2_grpc.UserServiceStub(auth_grpc.channel)
    request = users_pb2.GetUserRequest(id=str(user["id"]))
    answer = await stub.GetUser(request, metadata=bearer(token), timeout=5)
    assert answer.name == XSS_NAME_SAFE
    batch = await stub.BatchGetUsers(
        users_pb2.BatchGetUsersRequest(ids=[str(user["id"])]), metadata=bearer(token), timeout=5
    )
    assert [u.name for u in batch.users] == [XSS_NAME_SAFE]
    me = await auth_grpc.http.get("/auth/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["name"] == XSS_NAME_SAFE


NASTY = [
    XSS_NAME,
    '" onmouseover="alert(1)',
    "' autofocus onfocus='alert(1)",
    "`${x}` &quot; &#34; &#x22; &apos; &#39;",
    '<a href="javascript:alert(1)">x</a>',
    "a < b > c & d",
]


@pytest.mark.parametrize("raw", NASTY, ids=range(len(NASTY)))
def test_safe_text_is_safe_in_a_quoted_attribute_and_round_trips(raw: str) -> None:
    safe = safe_text("f", raw)
    assert not set(safe) & set("<>\"'"), safe  # can close neither a tag nor an attribute
    assert safe_text("f", safe) == safe == shown(safe)  # idempotent: edits never double-escape
    assert safe_text("f", html.unescape(safe)) == safe


LINKS = {
    "//evil.example/x": False,
    "ssh://host": False,
    "magnet:?xt=urn:btih:0": False,
    "/relative": False,
    "javascript:alert(1)": False,
    "jav&#x09;ascript:alert(1)": False,
    "data:text/html,<script>alert(1)</script>": False,
    "ftp://files.example": False,
    "https://ok.example/": True,
    "http://ok.example/": True,
    "mailto:someone@example.com": True,
}


async def test_publication_links_keep_only_http_https_and_mailto(
    embedded: httpx.AsyncClient, session: Session
) -> None:
    body = "".join(f'<a href="{href}">{n}</a>' for n, href in enumerate(LINKS))
    created = await embedded.post(
        "/api/publications", json={"title": "links", "body": body}, headers=session.bearer
    )
    assert created.status_code == 201, created.text
    stored = created.json()["body"]
    for href, kept in LINKS.items():
        assert (f'href="{html.escape(href)}"' in stored) is kept, (href, stored)
    assert stored.count('rel="noopener noreferrer"') == len(LINKS)
    assert safe_html("b", body) == stored
