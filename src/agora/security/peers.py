"""Tokens from the platform's other services: one `PeerIssuer` per AGORA_TRUSTED_ISSUERS entry.

Keys are isolated per issuer (the bug class of CVE-2026-49998): a token is routed by
its `iss` claim to that issuer's own keys and algorithms, and PyJWT checks the signed
`iss` again, so a key configured or fetched for one issuer never verifies a token that
names another, and Agora's own keys never verify a peer's token (nor the reverse).

A peer's token needs `iss`, `sub` and `exp` (and `aud` when the entry sets `audience`);
`nbf`, `iat`, `jti` and `typ` are checked when present. Revocation works as for
Agora's tokens: "everywhere" by `iat` (a token without `iat` counts as issued at 0, so
any logout-all revokes it) and one token by its `jti`, namespaced by issuer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from typing import Any

import jwt

from agora.core.issuers import TrustedIssuer
from agora.security.jwks import JwksSource
from agora.security.keys import Key, KeySet, key_from_public
from agora.security.tokens import (
    ACCESS,
    MAX_LIFETIME,
    Identity,
    TokenError,
    decode_error,
)

log = logging.getLogger("agora.peers")

PEER_REQUIRED = ["iss", "sub", "exp"]


def peer_jti(issuer: str, token: str, jti: object) -> str:
    """A revocation id no other issuer can produce: per issuer, from `jti` when present,
    else from the token itself (so that logging out one jti-less token still works)."""
    own = jti if isinstance(jti, str) and jti else "token:" + token
    digest = hashlib.sha256(f"{issuer}\0{own}".encode()).digest()
    return "peer-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:40]


class PeerIssuer:
    def __init__(self, entry: TrustedIssuer, *, kid_retry: float, min_gap: float) -> None:
        self.name = entry.issuer
        self.algorithms = tuple(entry.algorithms)
        self.audience = entry.audience
        self.jwks: JwksSource | None = None
        self._static: KeySet | None = None
        if entry.secret is not None:
            secret = entry.secret_bytes()
            self._static = KeySet([Key(kid="", alg="HS256", verifying=secret)], None)
        elif entry.public_key is not None:
            self._static = KeySet([key_from_public(entry.public_key)], None)
        elif entry.jwks_url is not None:
            self.jwks = JwksSource(
                entry.jwks_url,
                label=f"issuer {entry.issuer!r}",
                algorithms=self.algorithms,
                kid_retry=kid_retry,
                min_gap=min_gap,
            )

    @property
    def keys(self) -> KeySet:
        if self._static is not None:
            return self._static
        assert self.jwks is not None
        return self.jwks.keys

    def key_for(self, header: dict[str, Any]) -> Key:
        """A configured secret or public key is the issuer's one key whatever `kid` says;
        a JWKS key is found by `kid`, or is the only one of the token's algorithm."""
        kid = header.get("kid")
        candidates = [k for k in self.keys.keys() if k.alg == header.get("alg")]
        if self._static is not None or kid is None:
            if len(candidates) == 1:
                return candidates[0]
        elif isinstance(kid, str):
            key = self.keys.get(kid)
            if key is not None:
                return key
        error = TokenError("Invalid token", "unknown_kid")
        error.issuer, error.kid = self.name, kid if isinstance(kid, str) else None
        raise error

    def verify(self, token: str, header: dict[str, Any], leeway: int) -> Identity:
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenError("Invalid token", "algorithm_not_allowed")
        key = self.key_for(header)
        if key.alg != alg:
            raise TokenError("Invalid token", "algorithm_mismatch")
        required = PEER_REQUIRED + (["aud"] if self.audience is not None else [])
        try:
            claims = jwt.decode(
                token,
                key.verifying,
                algorithms=[key.alg],
                issuer=self.name,
                audience=self.audience,
                leeway=leeway,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise decode_error(exc) from exc
        if int(claims["exp"]) > time.time() + MAX_LIFETIME + leeway:
            raise TokenError("Invalid token", "lifetime_too_long")
        if claims.get("typ", ACCESS) != ACCESS:
            raise TokenError("Invalid token type", "wrong_type")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenError("Invalid token", "bad_subject")
        if claims.get("user_id", subject) != subject:
            raise TokenError("Invalid token", "bad_subject")
        login = claims.get("login")
        return Identity(
            user_id=subject,
            login=login if isinstance(login, str) else "",
            jti=peer_jti(self.name, token, claims.get("jti")),
            exp=int(claims["exp"]),
            claims=claims,
        )


class PeerIssuers:
    """Every trusted issuer by name; what `TokenService` routes a foreign `iss` to."""

    def __init__(
        self, entries: list[TrustedIssuer], *, kid_retry: float = 30.0, min_gap: float = 2.0
    ) -> None:
        self._by_name = {
            entry.issuer: PeerIssuer(entry, kid_retry=kid_retry, min_gap=min_gap)
            for entry in entries
        }

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def get(self, issuer: object) -> PeerIssuer | None:
        return self._by_name.get(issuer) if isinstance(issuer, str) else None

    def _jwks(self, issuer: str | None) -> JwksSource | None:
        peer = self.get(issuer)
        return peer.jwks if peer is not None else None

    async def start(self) -> None:
        """First fetch of every peer JWKS; a failure is logged and retried on demand."""
        sources = [p.jwks for p in self._by_name.values() if p.jwks is not None]
        await asyncio.gather(*(source.refresh(force=True) for source in sources))

    def start_sync(self) -> None:
        for peer in self._by_name.values():
            if peer.jwks is not None:
                peer.jwks.refresh_sync(force=True)

    async def refresh(self, issuer: str | None, kid: str | None) -> bool:
        source = self._jwks(issuer)
        return await source.refresh(kid) if source is not None else False

    def refresh_sync(self, issuer: str | None, kid: str | None) -> bool:
        source = self._jwks(issuer)
        return source.refresh_sync(kid) if source is not None else False
