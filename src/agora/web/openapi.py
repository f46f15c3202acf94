"""The OpenAPI document a client generator can use, for one service or all of them.

FastAPI writes each service's document from its routes; `complete` adds what FastAPI
cannot know about Agora, from the same code that answers:
- the security schemes: `bearerAuth` (`Authorization: Bearer`), `cookieAuth` (the
  `auth_token` cookie) and `csrfToken` (its `X-CSRF-Token` header, needed with the
  cookie on every method but GET/HEAD/OPTIONS: `web/csrf.py`). An operation behind the
  token check (`web/guard.TOKEN_CHECKS` among its dependencies) gets them, with its 401
  and, for a change, the CSRF 403;
- every error answer's body, `ErrorBody` (`web/errors.py`), which is what the error
  handlers send, 422 included (never FastAPI's own validation shape); the 400 of a
  malformed JSON body and the 413 of a body over the limit where a body is taken;
- `servers`: the paths are the same under `make run` and behind nginx.

`merged` joins the services' documents into one (what `make run` serves at
/openapi.json, `runtime/process.py`), the paths carrying their public prefixes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse

from agora.core.errors import AgoraError, CsrfRefused, PayloadTooLarge, Unauthorized
from agora.web.errors import ErrorBody
from agora.web.guard import TOKEN_CHECKS
from agora.web.service_app import ServiceApp

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "auth_token"},
    "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
}
READ_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
CHANGE_SECURITY: list[dict[str, list[str]]] = [
    {"bearerAuth": []},
    {"cookieAuth": [], "csrfToken": []},
]
SAFE_METHODS = {"get", "head", "options"}
SERVERS = [
    {
        "url": "/",
        "description": "where this document is served: the same paths under "
        "`make run` and behind nginx",
    }
]
SCHEMAS = "#/components/schemas/"
ERROR_REF = {"$ref": f"{SCHEMAS}ErrorBody"}
MALFORMED = "Malformed JSON body"


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(public path, methods, route) of every APIRoute of the app, included routers'
    too (FastAPI 0.160+ nests them behind `iter_route_contexts`; before, all was flat)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path_format, set(route.methods or ()), route
        return
    for context in iterate(app.routes):
        if isinstance(context.route, APIRoute):
            yield context.path_format, set(context.methods or ()), context.route


def requires_token(route: APIRoute) -> bool:
    return any(call in TOKEN_CHECKS for call in _calls(route.dependant))


def _described(error: type[AgoraError]) -> str:
    return (error.__doc__ or error.__name__).strip().splitlines()[0]


def _add_error(responses: dict[str, Any], status: int, text: str, *, also: bool = False
               ) -> None:  # fmt: skip
    """Document `status` unless the route already does; `also`: add `text` to it."""
    entry = responses.setdefault(str(status), {"description": text})
    if also and text not in entry["description"]:
        entry["description"] = f"{entry['description']}; {text}"


def complete(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """`document` (FastAPI's, for `app`) with Agora's security and error bodies."""
    document = copy.deepcopy(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["components"]["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    document["servers"] = copy.deepcopy(SERVERS)
    for path, methods, route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in methods:
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, method.lower(), requires_token(route))
    return document


def _complete_operation(operation: dict[str, Any], method: str, protected: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if protected:
        operation["security"] = copy.deepcopy(
            READ_SECURITY if method in SAFE_METHODS else CHANGE_SECURITY
        )
        _add_error(responses, 401, _described(Unauthorized))
        if method not in SAFE_METHODS:
            _add_error(responses, 403, _described(CsrfRefused), also=True)
    if "requestBody" in operation:
        _add_error(responses, 400, MALFORMED)
        _add_error(responses, 413, _described(PayloadTooLarge))
    else:  # Agora's one 400 over HTTP is a malformed body: none taken, none possible
        responses.pop("400", None)
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["content"] = {"application/json": {"schema": ERROR_REF}}


def merged(documents: Sequence[tuple[str, dict[str, Any]]], title: str, version: str
           ) -> dict[str, Any]:  # fmt: skip
    """One document for several (service name, document): their paths, tags and
    components together. A schema name two services define differently is renamed in
    the later one, prefixed with its service's name (`UserOut` -> `MessagingUserOut`),
    references included, so that neither wins silently."""
    result: dict[str, Any] = {
        "openapi": documents[0][1].get("openapi", "3.1.0"),
        "info": {"title": title, "version": version},
        "servers": copy.deepcopy(SERVERS),
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
        "tags": [],
    }
    known: dict[str, Any] = result["components"]["schemas"]
    for service, document in documents:
        schemas = document.get("components", {}).get("schemas", {})
        clashes = [n for n, schema in schemas.items() if n in known and known[n] != schema]
        document = _renamed(document, {n: f"{service.title()}{n}" for n in clashes})
        for path, item in document.get("paths", {}).items():
            result["paths"].setdefault(path, {}).update(item)
        known.update(document.get("components", {}).get("schemas", {}))
        for tag in document.get("tags", []):
            if tag not in result["tags"]:
                result["tags"].append(tag)
    if not result["tags"]:
        del result["tags"]
    return result


def _renamed(document: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A copy of `document` with these schemas renamed, and every reference to them."""
    text = json.dumps(document)
    for old, new in names.items():
        text = text.replace(f'"{SCHEMAS}{old}"', f'"{SCHEMAS}{new}"')
    renamed: dict[str, Any] = json.loads(text)
    schemas = renamed.get("components", {}).get("schemas", {})
    for old, new in names.items():
        schemas[new] = schemas.pop(old)
    return renamed


def swagger_page(openapi_url: str, title: str) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - Swagger UI")


def documents_of(apps: Iterable[ServiceApp]) -> list[tuple[str, dict[str, Any]]]:
    return [(app.context.name, app.openapi()) for app in apps]
