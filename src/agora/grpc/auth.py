"""Who is calling a gRPC method: the access token in `authorization: Bearer` metadata.

Verification is the HTTP guard's own (`TokenGuard.verify`: signature, algorithm
allow-list, claims, key refresh on an unknown `kid`, revocation), so a token refused
over REST is refused over gRPC for the same reason. A refusal is audited as
`auth.rejected` (as the guard does for HTTP) with the gRPC method and the peer's IP,
and answered UNAUTHENTICATED. Cookies have no meaning here, hence no CSRF check.

`@authenticated_rpc` wraps a servicer method `(self, request, caller) -> response`
into the `(self, request, context)` gRPC calls, authenticating first and mapping every
error to its status (`agora.grpc.errors`).

A method wrapped with `@user_or_service_rpc` also accepts another Agora service:
`authorization: Basic base64(client_id:secret)`, the secret being the one
`security.client_secrets` derives for that client id from the shared JWT secret, or
`AGORA_INTROSPECTION_SECRET` (the client credentials of the introspection endpoint).
It gets a `ServiceCaller`, which the method may trust further than a user (auth's
BatchGetUsers answers a service about anyone). A wrong secret is audited as
`auth.rejected` (reason `bad_client_secret`) and UNAUTHENTICATED.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import grpc

from agora.core.audit import Audit
from agora.core.errors import Unauthorized
from agora.grpc.errors import answered
from agora.security.client_secrets import ClientSecrets, basic_credentials
from agora.security.guard import TokenGuard, TokenRejected
from agora.security.tokens import Identity, TokenError


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    token: str  # the raw access token, to forward to other services
    ip: str | None

    @property
    def user_id(self) -> str:
        return self.identity.user_id


@dataclass(frozen=True, slots=True)
class ServiceCaller:
    client_id: str  # the calling service, e.g. "messaging"
    ip: str | None


def authorization(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, str]:
    """The (lower-cased scheme, credentials) of the first `authorization` entry."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        scheme, _, credentials = text.partition(" ")
        return scheme.lower(), credentials.strip()
    return "", ""


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        scheme, _, credentials = text.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None  # another scheme: no token
    return None


def peer_ip(peer: str | None) -> str | None:
    """`ipv4:10.0.0.1:5000` -> `10.0.0.1`; `ipv6:%5B::1%5D:5000` -> `::1`; else None."""
    if not peer:
        return None
    scheme, _, address = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    host, _, _port = unquote(address).rpartition(":")
    return host.strip("[]") or None


Req = TypeVar("Req")
Resp = TypeVar("Resp")


class GrpcAuthenticator:
    def __init__(
        self, guard: TokenGuard, audit: Audit, clients: ClientSecrets | None = None
    ) -> None:
        self.guard = guard
        self.audit = audit
        self.clients = clients or ClientSecrets()  # none set: no service calls as a service

    async def authenticate_user_or_service(
        self, context: grpc.aio.ServicerContext[Req, Resp], method: str
    ) -> Caller | ServiceCaller:
        scheme, credentials = authorization(context.invocation_metadata())
        if scheme != "basic":
            return await self.authenticate(context, method)
        ip = peer_ip(context.peer())
        pair = basic_credentials(credentials)
        if pair is not None and self.clients.accepts(*pair):
            return ServiceCaller(pair[0], ip)
        await self.audit.refusal(
            "auth.rejected",
            ip=ip,
            reason="bad_client_secret",
            status=401,
            method=method,
            transport="grpc",
        )
        raise Unauthorized("Invalid client credentials")

    async def authenticate(
        self, context: grpc.aio.ServicerContext[Req, Resp], method: str
    ) -> Caller:
        token = bearer_token(context.invocation_metadata())
        ip = peer_ip(context.peer())
        try:
            identity = await self.guard.verify(token)
        except TokenError as error:
            await self.audit.refusal(  # counted per source past the first few (core/audit)
                "auth.rejected",
                ip=ip,
                reason=error.reason,
                status=401,
                method=method,
                transport="grpc",
            )
            raise TokenRejected(error) from None
        assert token is not None  # verify refuses a missing token
        return Caller(identity, token, ip)


class AuthenticatedServicer(Protocol):
    SERVICE: str  # the full gRPC service name, e.g. "agora.auth.v1.UserService"
    auth: GrpcAuthenticator


S = TypeVar("S", bound=AuthenticatedServicer)


def authenticated_rpc(
    handler: Callable[[S, Req, Caller], Awaitable[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    return _rpc(handler, services=False)


def user_or_service_rpc(
    handler: Callable[[S, Req, Caller | ServiceCaller], Awaitable[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """As `authenticated_rpc`, the caller being a user or a service (see above)."""
    return _rpc(handler, services=True)


def _rpc(
    handler: Callable[[S, Req, Any], Awaitable[Resp]], *, services: bool
) -> Callable[[S, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    name = handler.__name__

    @functools.wraps(handler)
    async def serve(self: S, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        method = f"/{self.SERVICE}/{name}"

        async def call() -> Resp:
            if services:
                caller: Caller | ServiceCaller = await self.auth.authenticate_user_or_service(
                    context, method
                )
            else:
                caller = await self.auth.authenticate(context, method)
            return await handler(self, request, caller)

        return await answered(method, context, call)

    return serve
