"""Typed dependencies: how a route asks for what its app was assembled with.

`build_service_app` keeps a `ServiceContext` on the app (settings, backends, audit,
tokens, revocations, guard); a service's `create_app` adds its own object with
`ServiceApp.provide`. A route declares what it needs as typed parameters:

    async def logout(user: CurrentUser, auth: AuthServiceDep, settings: SettingsDep): ...

The aliases every service shares are here; a service's own live in that service
(`services/<name>/deps.py`), made with `from_app(Kind)`: the one way to reach an object
the app was assembled with. Each is an `async def`: FastAPI runs a plain `def`
dependency in a thread.

Code that is already a dependency (the token check) reads `app_of(request)` directly:
every dependency more costs FastAPI a resolution pass on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.security.guard import TokenGuard
from agora.security.revocation import RevocationStore
from agora.security.tokens import TokenService
from agora.web.context import ServiceContext
from agora.web.service_app import ServiceApp

T = TypeVar("T")
Dependency = Callable[[Request], Coroutine[Any, Any, T]]
DependencyT = TypeVar("DependencyT", bound=Callable[..., Any])

# The dependencies that only hand over what the app was assembled with: they read no
# input and refuse nothing, so when they run (before or after the token check) changes
# no answer (`web/guard.GuardedRoute` relies on it).
CONTEXT_READS: set[Callable[..., Any]] = set()


def context_read(dependency: DependencyT) -> DependencyT:
    CONTEXT_READS.add(dependency)
    return dependency


def app_of(connection: HTTPConnection) -> ServiceApp:
    """The service app serving this request (`build_service_app` made every one)."""
    app: ServiceApp = connection.app
    return app


def from_app(kind: type[T]) -> Dependency[T]:
    """A dependency answering the `kind` object the app was given (`ServiceApp.provide`)."""

    async def dependency(request: Request) -> T:
        return app_of(request).provided(kind)

    dependency.__qualname__ = f"from_app({kind.__name__})"
    return context_read(dependency)


@context_read
async def context_of(request: Request) -> ServiceContext:
    return app_of(request).context


@context_read
async def settings_of(request: Request) -> Settings:
    return app_of(request).context.settings


@context_read
async def audit_of(request: Request) -> Audit:
    return app_of(request).context.audit


@context_read
async def tokens_of(request: Request) -> TokenService:
    return app_of(request).context.tokens


@context_read
async def guard_of(request: Request) -> TokenGuard:
    return app_of(request).context.guard


@context_read
async def revocations_of(request: Request) -> RevocationStore:
    return app_of(request).context.revocations


ContextDep = Annotated[ServiceContext, Depends(context_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
AuditDep = Annotated[Audit, Depends(audit_of)]
TokensDep = Annotated[TokenService, Depends(tokens_of)]
GuardDep = Annotated[TokenGuard, Depends(guard_of)]
RevocationsDep = Annotated[RevocationStore, Depends(revocations_of)]
