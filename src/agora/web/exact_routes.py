"""Exact-path dispatch: a hot route found by one dict lookup, ahead of FastAPI's router.

FastAPI finds a route by asking each one in turn (included routers nest them), then
solves the endpoint's parameters, even for an endpoint that takes nothing but the
Request: about a quarter of the CPU of `GET /api/publications` in a profile of
`bench.publications_cpu` (issue 13; docs/benchmarks.md). A route marked `@exact_route`
takes only the Request and returns a Response (checked when the app is built);
`ExactRoutes`, the router's own entry (Starlette's router middleware, inside every app
middleware and exception handler), calls it for its exact method and path as FastAPI's
route would: the same `scope["route"]` (metrics, access line), its errors answered by
the app's handlers. Anything else, and a request under a `root_path`, goes to FastAPI's
router unchanged. The OpenAPI document is FastAPI's: the route stays registered as it
was. (FastAPI's own telemetry, off in Agora, would not see the route's template.)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A route as its router serves it: what it matches (`regex` None: unknown, taken
    as anything; `methods` None: any) and, for an APIRoute, what FastAPI runs before
    the endpoint (its own dependencies and an including router's)."""

    path: str
    regex: typing.Pattern[str] | None
    methods: set[str] | None
    route: BaseRoute
    dependant: Dependant | None = None
    max_body_size: int | None = None

    def shadows(self, method: str, path: str) -> bool:
        return (self.regex is None or self.regex.match(path) is not None) and (
            self.methods is None or method in self.methods
        )


def candidates(app: FastAPI) -> Iterator[Candidate]:
    """Every route of `app` in the router's order, included routers' too (FastAPI
    0.160+ nests them: what an inclusion adds is on its route context)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts: Iterable[Any] = app.routes if iterate is None else iterate(app.routes)
    for context in contexts:  # a RouteContext forwards to the route as served
        route = getattr(context, "route", context)
        methods = getattr(context, "methods", None)
        yield Candidate(
            getattr(context, "path_format", None) or "",
            getattr(context, "path_regex", None),
            set(methods) if methods is not None else None,
            route,
            getattr(context, "dependant", None) if isinstance(route, APIRoute) else None,
            getattr(context, "max_body_size", None),
        )


def exact_routes(routes: Iterable[Candidate]) -> Table:
    """(method, path) of each marked route, in the router's order: a route registered
    earlier that matches the same method and path (a Mount, a pattern) keeps it."""
    table: Table = {}
    earlier: list[Candidate] = []
    for candidate in routes:
        route = candidate.route
        if isinstance(route, APIRoute) and route.endpoint in EXACT_ROUTES:
            _check(candidate, route)
            path = candidate.path
            for method in candidate.methods or ():
                if not any(seen.shadows(method, path) for seen in earlier):
                    table[(method, path)] = route
        earlier.append(candidate)
    return table


def install_exact_routes(app: FastAPI) -> None:
    """Puts `ExactRoutes` at the entry of `app`'s router, once, for the marked routes."""
    router = app.router
    entry: ASGIApp = router.middleware_stack
    if isinstance(entry, ExactRoutes):  # built again: the table too
        entry = entry.app
    table = exact_routes(candidates(app))
    router.middleware_stack = ExactRoutes(entry, table) if table else entry  # type: ignore[assignment]


def _check(candidate: Candidate, route: APIRoute) -> None:
    """Refuses a marked route FastAPI would do more for than hand it the Request."""
    dependant = candidate.dependant or route.dependant
    params = inspect.signature(route.endpoint).parameters
    returns = typing.get_type_hints(route.endpoint).get("return")
    plain = (
        "{" not in candidate.path
        and candidate.max_body_size is None
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
            f"{route.endpoint.__qualname__} ({candidate.path}): an exact route takes only "
            "the Request, has no dependency (its own or its router's), no path parameter "
            "nor body limit of its own, and returns a Response"
        )
