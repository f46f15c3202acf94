"""Issue 10 §5: one OpenAPI document for every service at /openapi.json (Swagger UI at
/docs) when they run in one process, that a client generator can use: security
schemes on the protected operations, servers, and error bodies that are what the
server answers. Real answers of the embedded app are validated against the document
it serves, by schemathesis (status, content type, headers, body schema).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agora.runtime.embedded import create_embedded_app
from agora.runtime.process import ProcessApp
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, unique_login

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PROTECTED = [
    ("get", "/auth/api/me"),
    ("post", "/auth/api/logout"),
    ("get", "/api/publications"),
    ("delete", "/api/publications/{publication_id}"),
    ("post", "/social/api/socials/connect-token"),
    ("get", "/api/v1/conversations"),
]
OPEN = [("post", "/auth/api/register"), ("post", "/auth/api/login"),
        ("get", "/auth/.well-known/jwks.json")]  # fmt: skip


@pytest.fixture
async def client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_embedded_app(make_settings(tmp_path, database_url=database_url))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


class Checked:
    """Sends requests and validates each answer against the served document."""

    def __init__(self, client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.client = client
        self.schema = schemathesis.openapi.from_dict(document)

    async def __call__(
        self, method: str, template: str, *, status: int, path: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        url = template.format(**(path or {}))
        response = await self.client.request(method, url, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        operation = self.schema[template][method.upper()]
        case = operation.Case(path_parameters=path or {}, query=kwargs.get("params"),
                              headers=kwargs.get("headers"))  # fmt: skip
        case.validate_response(response, checks=CHECKS)
        return response


async def test_one_document_for_every_service_with_security_and_servers(
    client: httpx.AsyncClient,
) -> None:
    served = await client.get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document["servers"][0]["url"] == "/"
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["cookieAuth"] == {"type": "apiKey", "in": "cookie", "name": "auth_token"}
    assert schemes["csrfToken"] == {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"}
    for method, path in PROTECTED:
        operation = document["paths"][path][method]
        assert {"bearerAuth": []} in operation["security"], path
        assert "401" in operation["responses"], path
        if method != "get":  # the cookie needs its CSRF header on a change
            assert {"cookieAuth": [], "csrfToken": []} in operation["security"], path
    for method, path in OPEN:
        assert "security" not in document["paths"][path][method], path
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # A 400 is a malformed body: never documented where no body is taken.
            if "400" in operation["responses"]:
                assert "requestBody" in operation or path == "/login", (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in document["components"]["schemas"]

    page = await client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "/openapi.json" in page.text
    assert "cdn.jsdelivr.net" in page.headers["content-security-policy"]


async def test_real_answers_match_the_document(client: httpx.AsyncClient) -> None:
    check = Checked(client, (await client.get("/openapi.json")).json())
    login = unique_login("openapi")
    user = {"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": "O"}
    await check("post", "/auth/api/register", json=user, status=201)
    await check("post", "/auth/api/register", json=user, status=409)
    await check("post", "/auth/api/register", json={**user, "password": "x"}, status=422)
    credentials = {"login": login, "password": PASSWORD}
    await check("post", "/auth/api/login", json={**credentials, "password": "no"}, status=401)
    logged = await check("post", "/auth/api/login", json=credentials, status=200)
    bearer = {"Authorization": f"Bearer {logged.json()['token']}"}
    await check("get", "/auth/api/me", headers=bearer, status=200)
    await check("get", "/auth/api/me", status=401)

    await check("get", "/api/publications", headers=bearer, status=200)
    await check("get", "/api/publications", status=401)
    await check("get", "/api/publications", headers=bearer, params={"limit": "0"}, status=422)
    await check("get", "/api/publications", headers=bearer, params={"cursor": "x"}, status=422)
    created = await check("post", "/api/publications", headers=bearer,
                          json={"title": "Hello"}, status=201)  # fmt: skip
    as_json = {**bearer, "Content-Type": "application/json"}
    await check("post", "/api/publications", headers=as_json, content=b"{oops", status=400)
    cookie_only = {"Cookie": f"auth_token={logged.json()['token']}"}
    refused = await check("post", "/api/publications", headers=cookie_only,
                          json={"title": "x"}, status=403)  # fmt: skip
    assert refused.json()["reason"] == "csrf_failed"
    item = "/api/publications/{publication_id}"
    await check("get", item, path={"publication_id": created.json()["id"]}, headers=bearer,
                status=200)  # fmt: skip
    await check("get", item, path={"publication_id": "999999"}, headers=bearer, status=404)

    await check("get", "/social/api/socials/connect-token", headers=bearer, status=200)
    await check("get", "/api/v1/conversations", headers=bearer, status=200)
    await check("get", "/api/v1/conversations", status=401)


def process(tmp_path: Path, **settings: Any) -> ProcessApp:
    return create_embedded_app(
        make_settings(tmp_path, database_url="sqlite+aiosqlite://", **settings)
    )


@pytest.mark.parametrize(
    ("settings", "served"),
    [
        ({"env": "dev"}, True),
        ({"env": "dev", "openapi": False}, False),
        ({"env": "prod"}, False),
        ({"env": "prod", "openapi": True}, True),
    ],
)
async def test_served_in_dev_and_in_prod_only_when_enabled(
    tmp_path: Path, settings: dict[str, Any], served: bool
) -> None:
    app = process(tmp_path, **settings)
    transport = httpx.ASGITransport(app=app)  # not started: the documents need no backend
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for path in ("/openapi.json", "/docs"):
            assert ((await c.get(path)).status_code == 200) is served, path
