"""Who is calling a gRPC method: the access token in `authorization: Bearer` metadata.

Verification is the HTTP guard's own (`TokenGuard.verify`: signature, algorithm
allow-list, claims, key refresh on an unknown `kid`, revocation), so a token refused
over REST is refused over gRPC for the same reason. A refusal is audited as
`auth.rejected` (as the guard does for HTTP) with the gRPC method and the peer's IP,
and answered UNAUTHENTICATED. Cookies have no meaning here, hence no CSRF check.

`@authenticated_rpc` wraps a servicer method `(self, request, caller) -> response`
into the `(self, request, context)` gRPC calls, authenticating first and mapping every
error to its status (`agora.grpc.errors`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import unquote

import grpc

from agora.core.audit import Audit
from agora.grpc.errors import answered
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
    def __init__(self, guard: TokenGuard, audit: Audit) -> None:
        self.guard = guard
        self.audit = audit

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
    name = handler.__name__

    @functools.wraps(handler)
    async def serve(self: S, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        method = f"/{self.SERVICE}/{name}"

        async def call() -> Resp:
            caller = await self.auth.authenticate(context, method)
            return await handler(self, request, caller)

        return await answered(method, context, call)

    return serve
