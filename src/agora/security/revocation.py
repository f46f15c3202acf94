"""Revoked tokens: one token by its `jti` (logout), or every token of a user issued
before a moment ("log out everywhere").

The database is the record; the cache answers the per-request question. Each entry
lives only until the last token it can concern has expired. The cache is refilled
from the database at start and whenever its marker key has vanished (a Redis restart
empties it), and a cache that cannot be reached sends the question to the database:
a revoked token never passes because a cache forgot it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import Integer, String, delete, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from agora.core.background import cancel_and_wait
from agora.db.engine import Base, Database, UTCDateTime, utcnow
from agora.ports.cache import Cache, CacheUnavailable
from agora.security.guard import Reads
from agora.security.tokens import Identity

log = logging.getLogger("agora.revocation")

RECHECK_INTERVAL = 5.0


class Revocation(Base):
    __tablename__ = "auth_revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    # For "everywhere": tokens issued (iat) before this second are revoked.
    revoked_before: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class RevocationStore:
    def __init__(self, cache: Cache, db: Database, prefix: str, max_token_age: int) -> None:
        self.cache = cache
        self.db = db
        self.prefix = prefix
        self.max_token_age = max_token_age
        self._marker = f"{prefix}revocations:loaded"
        self._task: asyncio.Task[None] | None = None

    def _jti_key(self, jti: str) -> str:
        return f"{self.prefix}revoked:jti:{jti}"

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}revoked:user:{user_id}"

    # --- writing ---------------------------------------------------------------------

    async def revoke(self, identity: Identity) -> None:
        """Revoke one token until its own expiry."""
        expires_at = datetime.fromtimestamp(identity.exp, UTC)
        async with self.db.transaction() as session:
            if await session.scalar(select(Revocation.id).where(Revocation.jti == identity.jti)):
                return
            session.add(
                Revocation(jti=identity.jti, user_id=identity.user_id, expires_at=expires_at)
            )
        await self._cache_jti(identity.jti, identity.exp)

    async def revoke_all(self, user_id: str) -> None:
        """Revoke every token of `user_id` issued up to now."""
        now = int(time.time())
        expires_at = datetime.fromtimestamp(now + self.max_token_age, UTC)
        async with self.db.transaction() as session:
            session.add(Revocation(user_id=user_id, revoked_before=now + 1, expires_at=expires_at))
        await self._cache_user(user_id, now + 1, now + self.max_token_age)

    async def _cache_jti(self, jti: str, exp: int) -> None:
        with contextlib.suppress(CacheUnavailable):  # the database has it; reads fall back
            await self.cache.set(self._jti_key(jti), b"1", ttl=max(1, exp - time.time()))

    async def _cache_user(self, user_id: str, revoked_before: int, until: int) -> None:
        key = self._user_key(user_id)
        with contextlib.suppress(CacheUnavailable):
            current = await self.cache.get(key)
            if current is None or int(current) < revoked_before:
                await self.cache.set(
                    key, str(revoked_before).encode(), ttl=max(1, until - time.time())
                )

    # --- the per-request question --------------------------------------------------

    async def is_revoked(self, identity: Identity) -> bool:
        try:
            # One read of all three at one instant: the marker still there means the
            # cache was whole when the revocation keys were read.
            revoked_jti, before, marker = await self.cache.get_many(*self._keys(identity))
        except CacheUnavailable:
            return await self._is_revoked_in_database(identity)
        return await self._decide(identity, revoked_jti, before, marker)

    async def is_revoked_reading(
        self, identity: Identity, reads: Reads
    ) -> tuple[bool, list[bytes | None] | None]:
        """`is_revoked`, with the caller's keys read in the same cache round trip
        (`Cache.get_many_and_touch`); their values, or None if the cache failed."""
        keys, ttls = reads
        try:
            values = await self.cache.get_many_and_touch([*self._keys(identity), *keys], ttls)
        except CacheUnavailable:
            return await self._is_revoked_in_database(identity), None
        revoked_jti, before, marker = values[:3]
        return await self._decide(identity, revoked_jti, before, marker), values[3:]

    def _keys(self, identity: Identity) -> tuple[str, str, str]:
        return self._jti_key(identity.jti), self._user_key(identity.user_id), self._marker

    async def _decide(
        self,
        identity: Identity,
        revoked_jti: bytes | None,
        before: bytes | None,
        marker: bytes | None,
    ) -> bool:
        if revoked_jti is not None:
            return True
        if marker is None:  # emptied (a Redis restart) and not refilled yet: the record answers
            return await self._is_revoked_in_database(identity)
        iat = int(identity.claims.get("iat", 0))
        return before is not None and iat < int(before)

    async def _is_revoked_in_database(self, identity: Identity) -> bool:
        iat = int(identity.claims.get("iat", 0))
        async with self.db.sessions() as session:
            found = await session.scalar(
                select(Revocation.id)
                .where(
                    Revocation.expires_at > utcnow(),
                    or_(
                        Revocation.jti == identity.jti,
                        (Revocation.user_id == identity.user_id)
                        & (Revocation.revoked_before > iat),
                    ),
                )
                .limit(1)
            )
        return found is not None

    # --- keeping the cache whole --------------------------------------------------------

    async def rehydrate(self) -> int:
        """Copy every live revocation into the cache, prune dead ones; returns the count."""
        async with self.db.transaction() as session:
            await session.execute(delete(Revocation).where(Revocation.expires_at <= utcnow()))
            rows = list((await session.scalars(select(Revocation))).all())
        for row in rows:
            until = int(row.expires_at.timestamp())
            if row.jti is not None:
                await self._cache_jti(row.jti, until)
            elif row.revoked_before is not None:
                await self._cache_user(row.user_id, row.revoked_before, until)
        await self.cache.set(self._marker, b"1")
        return len(rows)

    async def start(self) -> None:
        try:
            await self.rehydrate()
        except Exception:  # cache or database down at start: the watch retries
            log.exception("revocation cache not filled at start; will retry")
        self._task = asyncio.create_task(self._watch(), name="revocation-cache-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_INTERVAL)
            try:
                if await self.cache.get(self._marker) is None:
                    log.warning("revocation cache was emptied; refilling from the database")
                    await self.rehydrate()
            except CacheUnavailable:
                continue  # reads go to the database meanwhile
            except Exception:
                log.exception("revocation cache refill failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
