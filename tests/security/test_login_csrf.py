"""Login CSRF (issue 11): a page on another origin cannot log the victim's browser in as
the attacker, nor register or log out through it; the cookie-setting routes refuse
cross-site requests (`web/same_origin.py`).

The browser test drives Debian's Chromium through playwright-core (tests/js/login_csrf.mjs):
Agora served by uvicorn on one port, attack pages served on others. The attack page of an
origin listed in AGORA_CORS_ORIGINS is the control: it does replace the cookie, so the
test would see a replaced cookie if the rule were gone.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from agora.web.same_origin import cross_site_reason
from tests.security.support import (
    Agora,
    audit_reasons,
    capture_audit,
    log_in,
    register,
    running_agora,
)
from tests.support.browser import require_chromium, run_script
from tests.support.http_server import serving
from tests.support.users import PASSWORD, register_and_login, unique_login

ENCTYPES = {
    "urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data",
    "text": "text/plain",
}


def attack_page(request: Request) -> HTMLResponse:
    """A form that posts itself on load: `?target=` the route, `login`, `password`."""
    kind = request.path_params["kind"]
    query = request.query_params
    target = html.escape(query["target"])
    login, password = query["login"], query["password"]
    if kind == "text":  # a JSON body out of a text/plain form: `name=value` is the body
        body = json.dumps({"login": login, "password": password, "pad": ""})[:-2]
        fields = f"<input name='{html.escape(body, quote=True)}' value='\"}}'>"
    else:
        fields = (
            f"<input name=login value='{html.escape(login, quote=True)}'>"
            f"<input name=password value='{html.escape(password, quote=True)}'>"
        )
    page = (
        f"<!doctype html><form id=f method=post action='{target}' enctype='{ENCTYPES[kind]}'>"
        f"{fields}</form><script>document.getElementById('f').submit()</script>"
    )
    return HTMLResponse(page)


ATTACKER_SITE = Starlette(routes=[Route("/{kind}", attack_page)])


@pytest.fixture
async def attack_sites() -> AsyncIterator[tuple[int, int]]:
    """Two attack sites: the attacker's, and a friendly one the deployment lists."""
    async with serving(ATTACKER_SITE) as attacker, serving(ATTACKER_SITE) as friendly:
        yield int(attacker.rsplit(":", 1)[1]), int(friendly.rsplit(":", 1)[1])


def _pages(port: int, host: str, victim: str, login: str, routes: dict[str, str]) -> dict[str, str]:
    query = httpx.QueryParams({"login": login, "password": PASSWORD})
    return {
        f"{host}:{port} {kind} {route}": (
            f"http://{host}:{port}/{kind}?{query.set('target', victim + route)}"
        )
        for kind, route in routes.items()
    }


async def test_a_page_on_another_origin_cannot_replace_the_victims_cookie(
    tmp_path: Path, attack_sites: tuple[int, int]
) -> None:
    node = require_chromium()
    attacker_port, friendly_port = attack_sites
    friendly = f"http://localhost:{friendly_port}"
    async with running_agora(
        tmp_path, env="dev", cookie_secure=False, cors_origins=[friendly]
    ) as agora:
        victim_login, attacker_login = unique_login("victim"), unique_login("attacker")
        await register_and_login(agora.client, victim_login)
        await register_and_login(agora.client, attacker_login)
        async with serving(agora.app) as victim:
            routes = {"urlencoded": "/auth/api/login", "multipart": "/auth/api/login",
                      "text": "/auth/api/login"}  # fmt: skip
            pages = {
                # Cross-site (another host name) and same-site (same host, another port).
                **_pages(attacker_port, "localhost", victim, attacker_login, routes),
                **_pages(attacker_port, "127.0.0.1", victim, attacker_login, routes),
                **_pages(
                    attacker_port, "localhost", victim, attacker_login, {"urlencoded": "/login"}
                ),
                # The control: an origin the deployment trusts.
                **_pages(
                    friendly_port,
                    "localhost",
                    victim,
                    attacker_login,
                    {"urlencoded": "/auth/api/login"},
                ),
            }
            results = await run_script(
                node,
                "login_csrf.mjs",
                {
                    "victim": victim,
                    "credentials": {"login": victim_login, "password": PASSWORD},
                    "pages": pages,
                },
            )
    for name, result in results.items():
        assert result["victim_login_status"] == 200, (name, result)
        assert result["victim_had_cookie"], (name, result)
        if name.startswith(f"localhost:{friendly_port}"):
            assert result["status"] == 200, (name, result)
            assert result["cookie_replaced"], ("the control must see the cookie replaced", result)
        else:
            assert result["status"] == 403, (name, result)
            assert json.loads(result["body"]) == {
                "error": "Cross-site request refused on a route that sets the session cookie"
            }, result
            assert not result["cookie_replaced"], (name, result)
    assert len(results) == len(pages)


# --- every cookie route, over HTTP in process ------------------------------------------

TRUSTED = "https://app.example.com"
REFUSED = {"error": "Cross-site request refused on a route that sets the session cookie"}


@pytest.fixture
async def agora(tmp_path: Path) -> AsyncIterator[Agora]:
    async with running_agora(tmp_path, cors_origins=[TRUSTED]) as running:
        yield running


def _register_body(login: str) -> dict[str, str]:
    return {"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": login}


CROSS_SITE_HEADERS = [
    {"Origin": "https://evil.example.net"},
    {"Origin": "null"},
    {"Origin": "http://testserver.evil.net"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.testserver"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},  # the browser knows
]
SAME_ORIGIN_HEADERS = [
    {},  # curl, Postman, a server: no browser page to forge anything
    {"Origin": "http://testserver"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    {"Sec-Fetch-Site": "none"},  # typed in the address bar
    {"Sec-Fetch-Site": "cross-site", "Origin": TRUSTED},  # AGORA_CORS_ORIGINS
]


@pytest.mark.parametrize(
    ("origin", "host", "passes"),
    [
        ("http://agora.example:8080", "agora.example:8080", True),
        ("http://agora.example:8081", "agora.example:8080", False),  # another port
        ("https://agora.example", "agora.example:443", True),  # the default port
        ("http://agora.example", "agora.example:443", False),
        # nginx forwards `$host`, without the port: the hostname decides.
        ("https://agora.example:8443", "agora.example", True),
        ("https://evil.example", "agora.example", False),
        ("https://agora.example.evil.net", "agora.example", False),
        ("null", "agora.example", False),
        ("ftp://agora.example", "agora.example", False),
        ("http://agora.example:99999", "agora.example", False),
    ],
)
def test_without_fetch_metadata_the_origin_must_name_this_host(
    origin: str, host: str, passes: bool
) -> None:
    assert (cross_site_reason(None, origin, host, ()) is None) is passes
    # Fetch metadata, when sent, decides: cross-site never passes unless listed.
    assert cross_site_reason("cross-site", origin, host, ()) == "sec-fetch-site cross-site"
    assert cross_site_reason("cross-site", origin, host, (origin,)) is None


@pytest.mark.parametrize("headers", CROSS_SITE_HEADERS, ids=json.dumps)
async def test_every_cookie_route_refuses_a_cross_site_request(
    agora: Agora, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    capture_audit(caplog)
    client = agora.client
    session = await log_in(client, await register(client))
    form = {"login": session.login, "password": PASSWORD}
    cookie = {**session.cookies(), "X-CSRF-Token": session.csrf}
    answers = {
        "register": await client.post(
            "/auth/api/register", json=_register_body(unique_login()), headers=headers
        ),
        "login": await client.post("/auth/api/login", data=form, headers=headers),
        "/login": await client.post("/login", data=form, headers=headers),
        "logout": await client.post("/auth/api/logout", headers={**cookie, **headers}),
        "logout/all": await client.post("/auth/api/logout/all", headers={**cookie, **headers}),
    }
    for route, answer in answers.items():
        assert (route, answer.status_code, answer.json()) == (route, 403, REFUSED)
        assert "set-cookie" not in answer.headers, route
    assert len(audit_reasons(caplog, "auth.cross_site_refused")) == len(answers)
    # The session survived the cross-site logouts.
    assert (await client.get("/auth/api/me", headers=session.bearer)).status_code == 200


@pytest.mark.parametrize("headers", SAME_ORIGIN_HEADERS, ids=json.dumps)
async def test_same_origin_trusted_origins_and_non_browser_clients_pass(
    agora: Agora, headers: dict[str, str]
) -> None:
    client = agora.client
    login = unique_login()
    answer = await client.post("/auth/api/register", json=_register_body(login), headers=headers)
    assert answer.status_code == 201, answer.text
    answer = await client.post(
        "/login", data={"login": login, "password": PASSWORD}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert "auth_token=" in answer.headers["set-cookie"]
    body = answer.json()
    cookie = {"Cookie": f"auth_token={body['token']}; csrf_token={body['csrf_token']}"}
    answer = await client.post(
        "/auth/api/logout", headers={**cookie, "X-CSRF-Token": body["csrf_token"], **headers}
    )
    assert answer.status_code == 200, answer.text
