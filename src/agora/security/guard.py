"""The token check every door shares: signature, claims, key refresh, revocation.

Framework-free: HTTP (`agora.web.guard`), gRPC (`agora.grpc.auth`) and socket tickets
(`agora.realtime.tickets`) all verify through one `TokenGuard`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from agora.core.audit import Audit
from agora.core.errors import Unauthorized
from agora.security.tokens import MISSING, Identity, TokenError, TokenService


class RevocationCheck(Protocol):
    async def is_revoked(self, identity: Identity) -> bool: ...


class KeyRefresh(Protocol):
    """Refetch the key set of `issuer` (None: Agora's own) for a token naming `kid`;
    True when the keys changed. Called with no argument by the socket tickets."""

    def __call__(self, issuer: str | None = None, kid: str | None = None) -> Awaitable[bool]: ...


# Cache keys a caller wants read along with the revocation keys, and the TTLs to reset
# among them (see `RevocationStore.is_revoked_reading`).
Reads = tuple[Sequence[str], Mapping[str, float]]


@runtime_checkable
class ReadingRevocationCheck(Protocol):
    """A revocation check that can read the caller's cache keys in its own round trip."""

    async def is_revoked_reading(
        self, identity: Identity, reads: Reads
    ) -> tuple[bool, list[bytes | None] | None]: ...


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
        # Known once: an isinstance check against a runtime Protocol walks its members
        # on every call (about 9 µs here).
        self._reading: ReadingRevocationCheck | None = None
        if isinstance(revocations, ReadingRevocationCheck):
            self._reading = revocations

    async def verify(self, token: str | None) -> Identity:
        """Signature, claims and revocation; raises TokenError."""
        identity = await self._signed(token)
        if self.revocations is not None and await self.revocations.is_revoked(identity):
            raise TokenError("Token revoked", "revoked")
        return identity

    async def verify_reading(
        self, token: str | None, reads: Callable[[Identity], Reads]
    ) -> tuple[Identity, list[bytes | None] | None]:
        """`verify`, and the cache keys `reads(identity)` names read in the revocation
        check's round trip: a hot route's one round trip. The values come back in
        order, or None when they could not be read with it (the caller reads them)."""
        identity = await self._signed(token)
        revocations, reading = self.revocations, self._reading
        values: list[bytes | None] | None = None
        if reading is not None:
            revoked, values = await reading.is_revoked_reading(identity, reads(identity))
        else:
            revoked = revocations is not None and await revocations.is_revoked(identity)
        if revoked:
            raise TokenError("Token revoked", "revoked")
        return identity, values

    async def _signed(self, token: str | None) -> Identity:
        """Signature and claims, with one key refresh for an unknown key id."""
        if not token:
            raise MISSING
        try:
            return self.tokens.verify(token)
        except TokenError as error:
            # A key we have not seen may have been rotated in: look once, then retry.
            if error.reason != "unknown_kid" or self.refresh_keys is None:
                raise
            if not await self.refresh_keys(error.issuer, error.kid):
                raise
            return self.tokens.verify(token)
