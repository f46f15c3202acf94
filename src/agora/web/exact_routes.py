"""Exact-path dispatch: a hot route found by one dict lookup, ahead of FastAPI's router.

FastAPI finds a route by asking each one in turn (included routers nest them), then
solves the endpoint's parameters, even for an endpoint that takes nothing but the
Request: about 70 µs of CPU per request of `GET /api/publications` here (issue 13,
`bench.publications_cpu`). A route marked `@exact_route` takes only the Request and
returns a Response (checked when the app is built); `ExactRoutes`, the router's own
entry (Starlette's router middleware, inside every app middleware and exception
handler), calls it for its exact method and path as FastAPI's route would: the same
`scope["route"]` (metrics, access line), its errors answered by the app's handlers.
Anything else, and a request under a `root_path`, goes to FastAPI's router unchanged.
The OpenAPI document is FastAPI's: the route stays registered as it was.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])

EXACT_ROUTES: set[Callable[..., Any]] = set()
Table = dict[tuple[str, str], APIRoute]


def exact_route(endpoint: EndpointT) -> EndpointT:
    """Marks an endpoint `(request: Request) -> Response` for exact-path dispatch."""
    EXACT_ROUTES.add(endpoint)
    return endpoint


class ExactRoutes:
    def __init__(self, app: ASGIApp, routes: Table) -> None:
        self.app = app  # the router's own entry: every other request
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.routes.get((scope["method"], scope["path"]))
            if route is not None:
                # What the router's match puts in the scope for a route without params.
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {}
                response: Response = await route.endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def exact_routes(routes: Iterable[tuple[str, set[str], APIRoute]]) -> Table:
    """(method, path) of each marked route, in the router's order: a route registered
    earlier that matches the same method and path keeps answering it."""
    table: Table = {}
    earlier: list[tuple[typing.Pattern[str], set[str]]] = []
    for path, methods, route in routes:
        if route.endpoint in EXACT_ROUTES:
            _check(path, route)
            for method in methods:
                if not any(regex.match(path) and method in seen for regex, seen in earlier):
                    table[(method, path)] = route
        earlier.append((compile_path(path)[0], methods))
    return table


def install_exact_routes(app: FastAPI, routes: Iterable[tuple[str, set[str], APIRoute]]) -> None:
    """Puts `ExactRoutes` at the entry of `app`'s router, once, for the marked routes."""
    router = app.router
    entry: ASGIApp = router.middleware_stack
    if isinstance(entry, ExactRoutes):  # built again: the table too
        entry = entry.app
    table = exact_routes(routes)
    router.middleware_stack = ExactRoutes(entry, table) if table else entry  # type: ignore[assignment]


def _check(path: str, route: APIRoute) -> None:
    dependant = route.dependant
    params = inspect.signature(route.endpoint).parameters
    hints = typing.get_type_hints(route.endpoint)
    returns = hints.get("return")
    plain = (
        "{" not in path
        and dependant.request_param_name is not None
        and len(params) == 1
        and not dependant.dependencies
        and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
        )
        and isinstance(returns, type)
        and issubclass(returns, Response)
    )
    if not plain:
        raise TypeError(
            f"{route.endpoint.__qualname__} ({path}): an exact route takes only the "
            "Request, has no dependency nor path parameter, and returns a Response"
        )
