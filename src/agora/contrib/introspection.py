"""Asking the auth service whether a token is still active (RFC 7662), with a short cache.

What `agora.contrib.flask` checks revocation with: a service that verifies tokens itself
(signature, claims) still learns of a logout within `cache_seconds`. Sync, because Flask
views are; thread-safe, because Flask servers run views on several threads.
"""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
from cachetools import TTLCache

INTROSPECT_PATH = "/auth/api/introspect"
TIMEOUT = 3.0


class RevocationUnavailable(Exception):
    """The auth service could not say; the request is refused rather than let through."""


class Introspection:
    def __init__(
        self,
        auth_url: str,
        client_id: str,
        secret: str,
        *,
        cache_seconds: float = 2.0,
        cache_size: int = 10_000,
    ) -> None:
        self.url = auth_url.rstrip("/") + INTROSPECT_PATH
        self._auth = (client_id, secret)
        # Keyed by a digest: the cache holds no usable token.
        self._answers: TTLCache[bytes, bool] = TTLCache(
            maxsize=cache_size, ttl=cache_seconds, timer=time.monotonic
        )
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=TIMEOUT)

    def is_active(self, token: str) -> bool:
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = self._answers.get(key)
        if known is not None:
            return known
        try:
            response = self._client.post(self.url, data={"token": token}, auth=self._auth)
            response.raise_for_status()
            active = response.json().get("active") is True
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise RevocationUnavailable(str(exc)) from exc
        with self._lock:
            self._answers[key] = active
        return active

    def close(self) -> None:
        self._client.close()
