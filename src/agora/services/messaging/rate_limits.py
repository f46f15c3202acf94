"""Rate limits of messaging: messages and uploads per hour, per user and per IP.

Four `agora.realtime.limits.RateLimiter`s over the Cache port (shared by every instance
with Redis): going over a limit blocks the subject for `realtime_block_seconds`, each
new block of the same subject lasting `realtime_block_growth` times longer. The user is
counted first and the IP only when the user is allowed, so a blocked user keeps
hammering their own block, not the address they may share with others (a NAT).

Messages are counted on the Counters port when one is given (the backends' own: on Redis
in batches, as the socket limits are, ports/counters.py): exact in one process, and
across P instances at most P x (B - 1) messages past a limit per hour, B being at most a
tenth of it. Two Redis round trips per message were a tenth of a send's server CPU
(issue 13). Uploads, rarer and with smaller limits, stay exact on the cache.
"""

from __future__ import annotations

import math

from agora.core.audit import Audit
from agora.core.errors import TooManyRequests
from agora.core.settings import Settings
from agora.ports.cache import Cache
from agora.ports.counters import Counters
from agora.realtime.limits import RateLimiter, Verdict, realtime_limiter
from agora.services.messaging.domain import Actor

WINDOW = 3600.0  # the limits are per hour
TOO_MANY_MESSAGES = "Too many messages"
TOO_MANY_UPLOADS = "Too many uploads"


class MessagingLimits:
    def __init__(
        self, cache: Cache, settings: Settings, audit: Audit, counters: Counters | None = None
    ) -> None:
        def limiter(name: str, limit: int, counted_on: Counters | None = None) -> RateLimiter:
            return realtime_limiter(
                cache, settings, f"messaging-{name}", limit, WINDOW, counters=counted_on
            )

        self.audit = audit
        self.messages_per_user = limiter(
            "messages-user", settings.messaging_messages_per_hour, counters
        )
        self.messages_per_ip = limiter(
            "messages-ip", settings.messaging_messages_per_ip_per_hour, counters
        )
        # Uploads are few and costly: counted exactly on the cache, without the batched
        # counters' slack across processes (ports/counters.py).
        self.media_per_user = limiter("media-user", settings.messaging_media_per_hour)
        self.media_per_ip = limiter("media-ip", settings.messaging_media_per_ip_per_hour)

    async def check_message(self, actor: Actor) -> None:
        """Count one message of `actor`; TooManyRequests when over a limit or blocked."""
        await self._check(
            actor, "messages", self.messages_per_user, self.messages_per_ip, TOO_MANY_MESSAGES
        )

    async def check_media(self, actor: Actor) -> None:
        """Count one upload of `actor`; TooManyRequests when over a limit or blocked."""
        await self._check(actor, "media", self.media_per_user, self.media_per_ip, TOO_MANY_UPLOADS)

    async def _check(
        self, actor: Actor, kind: str, per_user: RateLimiter, per_ip: RateLimiter, message: str
    ) -> None:
        verdict = await per_user.hit(actor.user_id)
        scope = "user"
        if verdict.allowed and actor.ip:
            verdict = await per_ip.hit(actor.ip)
            scope = "ip"
        if verdict.allowed:
            return
        await self._audit_block(verdict, actor, kind, scope)
        raise TooManyRequests(message, retry_after=max(1, math.ceil(verdict.retry_after)))

    async def _audit_block(self, verdict: Verdict, actor: Actor, kind: str, scope: str) -> None:
        """A block is audited when it starts; refusals during it are not (one per event)."""
        if verdict.new_block_level is None:
            return
        await self.audit.record(
            "messaging.rate_limited",
            kind=kind,
            scope=scope,
            user_id=actor.user_id,
            ip=actor.ip,
            level=verdict.new_block_level,
            seconds=verdict.retry_after,
        )
