"""The token check every door shares: signature, claims, key refresh, revocation.

Framework-free: HTTP (`agora.web.guard`), gRPC (`agora.grpc.auth`) and socket tickets
(`agora.realtime.tickets`) all verify through one `TokenGuard`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from agora.core.audit import Audit
from agora.core.errors import Unauthorized
from agora.security.tokens import MISSING, Identity, TokenError, TokenService


class RevocationCheck(Protocol):
    async def is_revoked(self, identity: Identity) -> bool: ...


class KeyRefresh(Protocol):
    """Refetch the key set of `issuer` (None: Agora's own) for a token naming `kid`;
    True when the keys changed. Called with no argument by the socket tickets."""

    def __call__(self, issuer: str | None = None, kid: str | None = None) -> Awaitable[bool]: ...


class TokenRejected(Unauthorized):
    def __init__(self, error: TokenError) -> None:
        super().__init__(error.message)
        self.reason = error.reason


class TokenGuard:
    def __init__(
        self,
        tokens: TokenService,
        audit: Audit,
        revocations: RevocationCheck | None = None,
        refresh_keys: KeyRefresh | None = None,
    ) -> None:
        self.tokens = tokens
        self.audit = audit
        self.revocations = revocations
        self.refresh_keys = refresh_keys

    async def verify(self, token: str | None) -> Identity:
        """Signature, claims and revocation; raises TokenError."""
        if not token:
            raise MISSING
        try:
            identity = self.tokens.verify(token)
        except TokenError as error:
            # A key we have not seen may have been rotated in: look once, then retry.
            if error.reason != "unknown_kid" or self.refresh_keys is None:
                raise
            if not await self.refresh_keys(error.issuer, error.kid):
                raise
            identity = self.tokens.verify(token)
        if self.revocations is not None and await self.revocations.is_revoked(identity):
            raise TokenError("Token revoked", "revoked")
        return identity
