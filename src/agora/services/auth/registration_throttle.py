"""Registration throttling: registrations per client IP in a fixed window, then 429.

A registration costs a full argon2 hash (~0.4 s of CPU, 64 MiB) and, when the login or
email is taken, tells the caller so: both make an unthrottled register route a way to
burn the server's CPU and to enumerate accounts. Every attempt counts (created or not),
before anything is hashed or looked up. Over `AGORA_REGISTER_IP_MAX_ATTEMPTS` in
`AGORA_REGISTER_IP_WINDOW` seconds, the IP gets 429 `Too many registrations` with
`Retry-After` (what is left of its window) and an `auth.register_throttled` audit event.

Without a client address (some test transports) nothing is counted. With the cache
unreachable, the check is skipped with a warning, as login throttling does.
"""

from __future__ import annotations

import logging
import math

from agora.core.audit import Audit
from agora.core.errors import TooManyRequests
from agora.core.settings import Settings
from agora.ports.cache import Cache, CacheUnavailable

log = logging.getLogger("agora.auth.throttle")

TOO_MANY_REGISTRATIONS = "Too many registrations"


class RegistrationThrottle:
    def __init__(self, cache: Cache, audit: Audit, settings: Settings) -> None:
        self._cache = cache
        self._audit = audit
        self._prefix = settings.key_prefix
        self._limit = settings.register_ip_max_attempts
        self._window = settings.register_ip_window

    def key(self, ip: str) -> str:
        return f"{self._prefix}register:ip:{ip}"

    async def check(self, ip: str | None) -> None:
        """Count this attempt; TooManyRequests when the IP is over its limit."""
        if not ip:
            return
        key = self.key(ip)
        try:
            attempts = await self._cache.incr(key, self._window)
            if attempts <= self._limit:
                return
            left = await self._cache.ttl(key)
        except CacheUnavailable as exc:
            log.warning("registration throttling skipped, the cache is unavailable: %s", exc)
            return
        retry_after = max(1, math.ceil(left if left is not None else self._window))
        await self._audit.record(
            "auth.register_throttled", ip=ip, attempts=attempts, retry_after=retry_after
        )
        raise TooManyRequests(TOO_MANY_REGISTRATIONS, retry_after)
