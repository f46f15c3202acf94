"""One JWKS URL: its current keys, and when a token with an unknown `kid` may fetch it again.

Two limits keep a stream of made-up kids from turning into a stream of fetches without
ever hiding a real rotation for long (issue 11, "stale JWKS keys"):
- each unknown kid causes at most one fetch per `kid_retry` seconds (a negative cache
  per kid): repeating one made-up kid costs nothing after its first fetch;
- fetches for any kids are at least `min_gap` seconds apart: a stream of *different*
  made-up kids costs one fetch per gap, and each of those fetches also brings a
  rotated-in key, so a real new kid is known within `min_gap` plus one fetch.
Tokens that arrive while a fetch is under way wait for that fetch instead of starting
another. Sync callers (the Flask adapter) and async ones (the doors) share the limits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
from cachetools import TTLCache

from agora.security.keys import ASYMMETRIC, KeySet

log = logging.getLogger("agora.jwks")

FETCH_TIMEOUT = 3.0
MAX_REMEMBERED_KIDS = 10_000


class JwksSource:
    def __init__(
        self,
        url: str,
        *,
        label: str,
        algorithms: tuple[str, ...] = ASYMMETRIC,
        kid_retry: float = 30.0,
        min_gap: float = 2.0,
    ) -> None:
        self.url = url
        self.label = label
        self.algorithms = algorithms
        self.min_gap = min_gap
        # Swapped whole when a fetch lands; readers never see half a set.
        self.keys = KeySet([], None)
        self._tried: TTLCache[str, bool] = TTLCache(
            maxsize=MAX_REMEMBERED_KIDS, ttl=kid_retry, timer=time.monotonic
        )
        self._last_fetch = float("-inf")
        self._guard = threading.Lock()  # the limits, across threads and event loops
        self._inflight: asyncio.Task[bool] | None = None

    def _may_fetch(self, kid: str | None) -> bool:
        """Spend the budget for one fetch on `kid`, if the limits allow it now."""
        with self._guard:
            now = time.monotonic()
            if kid is not None and kid in self._tried:
                return False
            if now - self._last_fetch < self.min_gap:
                return False
            self._last_fetch = now
            if kid is not None:
                self._tried[kid] = True
            return True

    def _install(self, document: Any) -> bool:
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        fetched = KeySet.from_jwks(document, self.algorithms, source=f"JWKS of {self.label}")
        before = {k.kid for k in self.keys.keys()}
        self.keys = fetched
        return {k.kid for k in fetched.keys()} != before

    def _failed(self, exc: Exception) -> bool:
        log.warning("JWKS fetch for %s from %s failed: %s", self.label, self.url, exc)
        return False

    # --- async callers (the doors) ----------------------------------------------------

    async def refresh(self, kid: str | None = None, *, force: bool = False) -> bool:
        """Fetch if the limits allow; True when the key set changed (or a fetch under
        way when called may have changed it: the caller should look again)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            return await asyncio.shield(inflight)
        if not force and not self._may_fetch(kid):
            return False
        if force:
            self._last_fetch = time.monotonic()
        task = asyncio.ensure_future(self._fetch())
        self._inflight = task
        return await asyncio.shield(task)

    async def _fetch(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                return self._install(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(exc)

    # --- sync callers (Flask views) ----------------------------------------------------

    def refresh_sync(self, kid: str | None = None, *, force: bool = False) -> bool:
        if not force and not self._may_fetch(kid):
            return False
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT) as client:
                response = client.get(self.url)
                response.raise_for_status()
                return self._install(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(exc)
