"""One-time connect tickets: a browser cannot send `Authorization` on a WebSocket, so it
trades its access token for a ticket (`connect-token`) and puts that in the URL.

A ticket is a JWT of our own key set with `typ`/`type` `ws-connect`, 10 s of life, the
user's id and login, and the access session it was issued from: `sid` (the access
token's `jti`), `sexp` and `siat` (its `exp` and `iat`). The session travels with the
socket: a socket lives no longer than the access token behind it, and dies with its
revocation.

Redeeming checks, in order: present; signature and claims; type; the ticket's own
`exp` with a short leeway of its own (the access tokens' 30 s would triple a 10 s
life); then it is burned with one atomic `set_if_absent` in the shared cache, so that
it opens one socket on one instance whatever the number of instances; last, the session
behind it must be alive (not expired, not revoked). A cache that cannot be reached
refuses tickets (fail closed): without it a ticket could be replayed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agora.ports.cache import Cache, CacheUnavailable
from agora.realtime.codes import (
    ALREADY_USED,
    INVALID_TICKET,
    SESSION_ENDED,
    TICKET_REQUIRED,
    TRY_AGAIN_LATER,
    WRONG_TYPE,
    CloseReason,
)
from agora.security.guard import RevocationCheck
from agora.security.tokens import Identity, IssuedToken, TokenError, TokenService

WS_CONNECT = "ws-connect"


class TicketRefused(Exception):
    def __init__(
        self, close: CloseReason, reason: str, *, user_id: str | None = None, jti: str | None = None
    ) -> None:
        super().__init__(close.message)
        self.close = close
        self.reason = reason  # for the audit trail, never shown to the client
        # Known once the signature checked out: whose ticket was refused.
        self.user_id = user_id
        self.jti = jti


@dataclass(frozen=True, slots=True)
class Ticket:
    user_id: str
    login: str
    jti: str
    session_jti: str
    session_exp: int
    session_iat: int


class TicketService:
    def __init__(
        self,
        tokens: TokenService,
        cache: Cache,
        revocations: RevocationCheck | None,
        *,
        prefix: str,
        ttl: int,
        leeway: float,
        refresh_keys: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.tokens = tokens
        self.cache = cache
        self.revocations = revocations
        self.prefix = prefix
        self.ttl = ttl
        self.leeway = leeway
        self.refresh_keys = refresh_keys

    def issue(self, session: Identity) -> IssuedToken:
        """A ticket for the access session `session` (the caller has verified it)."""
        return self.tokens.issue(
            session.user_id,
            WS_CONNECT,
            self.ttl,
            login=session.login,
            type=WS_CONNECT,
            sid=session.jti,
            sexp=session.exp,
            siat=int(session.claims.get("iat", 0)),
        )

    async def redeem(self, token: str | None) -> Ticket:
        """The ticket behind `token`, burned; raises TicketRefused."""
        if not token:
            raise TicketRefused(TICKET_REQUIRED, "missing")
        identity = await self._verify(token)
        try:
            return await self._redeem(identity)
        except TicketRefused as refused:
            refused.user_id, refused.jti = identity.user_id, identity.jti
            raise

    async def _redeem(self, identity: Identity) -> Ticket:
        if identity.claims.get("type", WS_CONNECT) != WS_CONNECT:
            raise TicketRefused(WRONG_TYPE, "wrong_type")
        now = time.time()
        if identity.exp + self.leeway < now:
            raise TicketRefused(INVALID_TICKET, "expired")
        ticket = _ticket_of(identity)
        if ticket is None:
            raise TicketRefused(INVALID_TICKET, "bad_session_claims")
        await self._burn(ticket.jti)
        if ticket.session_exp <= now:
            raise TicketRefused(SESSION_ENDED, "session_expired")
        if self.revocations is not None and await self.revocations.is_revoked(
            session_identity(ticket)
        ):
            raise TicketRefused(SESSION_ENDED, "session_revoked")
        return ticket

    async def _verify(self, token: str) -> Identity:
        try:
            try:
                return self.tokens.verify(token, WS_CONNECT)
            except TokenError as error:
                # A key rotated in since we last looked: look once, then retry.
                if error.reason != "unknown_kid" or self.refresh_keys is None:
                    raise
                if not await self.refresh_keys():
                    raise
                return self.tokens.verify(token, WS_CONNECT)
        except TokenError as error:
            if error.reason == "wrong_type":
                raise TicketRefused(WRONG_TYPE, "wrong_type") from None
            raise TicketRefused(INVALID_TICKET, error.reason) from None

    async def _burn(self, jti: str) -> None:
        # Outlives every moment the token can still verify (its exp plus any leeway).
        hold = self.ttl + max(self.leeway, self.tokens.leeway) + 1
        try:
            first = await self.cache.set_if_absent(f"{self.prefix}ticket:{jti}", b"1", hold)
        except CacheUnavailable:
            raise TicketRefused(TRY_AGAIN_LATER, "cache_unavailable") from None
        if not first:
            raise TicketRefused(ALREADY_USED, "reused")


def _ticket_of(identity: Identity) -> Ticket | None:
    claims = identity.claims
    sid, sexp, siat = claims.get("sid"), claims.get("sexp"), claims.get("siat", 0)
    if not isinstance(sid, str) or not sid:
        return None
    if not isinstance(sexp, int) or not isinstance(siat, int):
        return None
    return Ticket(
        user_id=identity.user_id,
        login=identity.login,
        jti=identity.jti,
        session_jti=sid,
        session_exp=sexp,
        session_iat=siat,
    )


def session_identity(ticket: Ticket) -> Identity:
    """The access session behind a ticket, as the revocation store asks about it."""
    return Identity(
        user_id=ticket.user_id,
        login=ticket.login,
        jti=ticket.session_jti,
        exp=ticket.session_exp,
        claims={"iat": ticket.session_iat},
    )
