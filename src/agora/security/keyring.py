"""Where a service's token keys come from, and how they stay current.

- HS256: the shared secret.
- RS256/ES256/EdDSA: a PEM file (AGORA_JWT_PRIVATE_KEY_FILE), or the key directory under
  AGORA_DATA_DIR/keys that `agora keys rotate` writes; the directory is re-read when its
  manifest changes, so a running auth service signs with the new key within seconds.
- AGORA_JWKS_URL: verify only, with the keys the auth service publishes; refetched when
  a token names an unknown `kid`, within the limits of `jwks.JwksSource` (once per kid
  per AGORA_JWKS_REFETCH_INTERVAL, AGORA_JWKS_MIN_REFETCH_GAP between any two), so a
  flood of made-up kids cannot turn into a flood of fetches nor hide a rotation.
- AGORA_TRUSTED_ISSUERS: each peer's own keys (`peers.PeerIssuers`), refreshed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agora.core.background import cancel_and_wait
from agora.core.settings import Settings
from agora.security.jwks import JwksSource
from agora.security.keys import MANIFEST, KeyDirectory, KeySet, key_from_private, load_private_pem
from agora.security.peers import PeerIssuers
from agora.security.tokens import TokenService

log = logging.getLogger("agora.keyring")

DIRECTORY_POLL = 2.0


def key_directory(settings: Settings) -> KeyDirectory:
    return KeyDirectory(settings.data_dir / "keys")


def retention(settings: Settings) -> int:
    """How long a retired key keeps verifying: until the last token it signed expires."""
    return settings.token_ttl + settings.token_leeway


def _with_secret(keyset: KeySet, settings: Settings) -> KeySet:
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    return keyset.merged(KeySet.from_secret(secret)) if secret else keyset


def local_keyset(settings: Settings) -> KeySet:
    if settings.jwt_algorithm == "HS256":
        return KeySet.from_secret(settings.secret)
    if settings.jwt_private_key_file is not None:
        key = key_from_private(load_private_pem(settings.jwt_private_key_file))
        return _with_secret(KeySet([key], key.kid), settings)
    keys = key_directory(settings).load_or_create(settings.jwt_algorithm, retention(settings))
    return _with_secret(keys, settings)


def initial_keyset(settings: Settings) -> KeySet:
    if settings.jwks_url:
        return _with_secret(KeySet([], None), settings)  # filled by the first fetch
    return local_keyset(settings)


def peer_issuers(settings: Settings) -> PeerIssuers:
    return PeerIssuers(
        settings.trusted_issuers,
        kid_retry=settings.jwks_refetch_interval,
        min_gap=settings.jwks_min_refetch_gap,
    )


class KeyRefresher:
    """Keeps `tokens.keys` (and the peers' keys) current; `refresh()` is what the guard
    calls on an unknown kid."""

    def __init__(self, tokens: TokenService, settings: Settings) -> None:
        self.tokens = tokens
        self.settings = settings
        self.jwks = (
            JwksSource(
                settings.jwks_url,
                label="the auth service",
                kid_retry=settings.jwks_refetch_interval,
                min_gap=settings.jwks_min_refetch_gap,
            )
            if settings.jwks_url
            else None
        )
        self._manifest_mtime = self._mtime()
        self._task: asyncio.Task[None] | None = None

    @property
    def _watches_directory(self) -> bool:
        s = self.settings
        return not s.jwks_url and s.jwt_algorithm != "HS256" and s.jwt_private_key_file is None

    def _mtime(self) -> float:
        with contextlib.suppress(OSError):
            return (key_directory(self.settings).path / MANIFEST).stat().st_mtime
        return 0.0

    async def refresh(self, issuer: str | None = None, kid: str | None = None) -> bool:
        """Fetch or reload the keys of `issuer` (None: ours) if allowed now; True if
        the key set changed."""
        if issuer is not None and issuer != self.settings.jwt_issuer:
            return self.tokens.peers is not None and await self.tokens.peers.refresh(issuer, kid)
        if self.jwks is None:
            return self._reload_directory()
        changed = await self.jwks.refresh(kid)
        if changed:
            self.tokens.keys = _with_secret(self.jwks.keys, self.settings)
        return changed

    def _reload_directory(self) -> bool:
        if not self._watches_directory:
            return False
        mtime = self._mtime()
        if mtime == self._manifest_mtime:
            return False
        self._manifest_mtime = mtime
        self.tokens.keys = _with_secret(key_directory(self.settings).load(), self.settings)
        log.info("signing keys reloaded", extra={"kid": self.tokens.keys.signing_kid})
        return True

    async def start(self) -> None:
        # A failed first fetch is retried on the first unknown kid.
        if self.tokens.peers is not None:
            await self.tokens.peers.start()
        if self.jwks is not None:
            if await self.jwks.refresh(force=True):
                self.tokens.keys = _with_secret(self.jwks.keys, self.settings)
        elif self._watches_directory:
            self._task = asyncio.create_task(self._watch(), name="key-directory-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(DIRECTORY_POLL)
            try:
                self._reload_directory()
            except Exception:  # a half-written key file: keep the old keys, try again
                log.exception("key directory reload failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def rotate(settings: Settings, alg: str | None = None) -> str:
    """`agora keys rotate`: a new signing key; returns its kid."""
    algorithm = alg or settings.jwt_algorithm
    if algorithm == "HS256":
        raise ValueError("HS256 uses AGORA_JWT_SECRET; rotate with RS256, ES256 or EdDSA")
    return key_directory(settings).rotate(algorithm, retention(settings)).kid
