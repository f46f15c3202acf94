"""The Redis backend of the Presence port: live devices per user, shared by every instance.

One sorted set per user, `presence:<user_id>` (after the namespace): member = device id,
score = the time the device expires. Each call is one Lua script, so "was the user
offline?" and the change that follows it are one atomic step even when two instances
join devices of the same user at once.

Time is Redis's own (`TIME` inside the scripts), not the instances': every expiry is set
and compared on one clock, so a skew between instances cannot make a device look dead
early or alive late. TTLs stay relative on the wire.

Each key also gets a Redis TTL reaching its last member's expiry: the set of a user whose
instance crashed vanishes by itself instead of lingering with dead members.

Timeouts are the cache's: a dead Redis is `PresenceUnavailable` within a couple of seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from agora.adapters.redis_breaker import breaker_for
from agora.adapters.redis_client import (
    redis_call,
    redis_client,
)
from agora.ports.presence import PresenceUnavailable

T = TypeVar("T")

# Shared head of every script: `now` on Redis's clock, and the key TTL helper. A member
# is live while its score (expiry) is strictly after `now`, as in MemoryPresence.
_PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function expire_with_last_member(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now) * 1000))
  end
end
"""

# KEYS[1] the user's set; ARGV[1] device, ARGV[2] ttl in seconds. 1 if it was offline.
_JOIN = (
    _PRELUDE
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local was_offline = redis.call('ZCARD', KEYS[1]) == 0
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
expire_with_last_member(KEYS[1])
if was_offline then return 1 end
return 0
"""
)

# KEYS[1] the user's set; ARGV[1] device. 1 if no live device is left.
_LEAVE = (
    _PRELUDE
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
return 0
"""
)

# KEYS[1] the user's set; ARGV[1] ttl in seconds, ARGV[2..] devices. A plain ZADD: an
# entry lost meanwhile (Redis restarted, the key expired during a stall) comes back.
_REFRESH = (
    _PRELUDE
    + """
local expires = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
end
expire_with_last_member(KEYS[1])
return 0
"""
)

# KEYS: the users' sets. How many live devices each has, in the order of KEYS: one
# command for any number of users (a pipeline of one script per user cost redis-py about
# 40 µs of packing and parsing per user: most of a message's send to 50 members, issue 13).
_ONLINE = (
    _PRELUDE
    + """
local since = string.format('(%.17g', now)
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCOUNT', key, since, '+inf')
end
return counts
"""
)
ONLINE_KEYS_PER_CALL = 1000  # bounds one call's time on Redis for a huge list


class RedisPresence:
    def __init__(self, url: str, *, namespace: str = "") -> None:
        self._namespace = namespace
        self._redis = redis_client(url)
        self._breaker = breaker_for(url)  # shared with every Redis adapter of the process
        # EVALSHA, loading the script on NOSCRIPT (a restarted or failed-over Redis).
        self._join = self._redis.register_script(_JOIN)
        self._leave = self._redis.register_script(_LEAVE)
        self._refresh = self._redis.register_script(_REFRESH)
        self._online = self._redis.register_script(_ONLINE)

    def _key(self, user_id: str) -> str:
        return f"{self._namespace}presence:{user_id}"

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(command, PresenceUnavailable, self._breaker)

    async def join(self, user_id: str, device_id: str, ttl: float) -> bool:
        key = self._key(user_id)
        return bool(await self._call(lambda: self._join(keys=[key], args=[device_id, ttl])))

    async def leave(self, user_id: str, device_id: str) -> bool:
        key = self._key(user_id)
        return bool(await self._call(lambda: self._leave(keys=[key], args=[device_id])))

    async def refresh(self, devices: Iterable[tuple[str, str]], ttl: float) -> None:
        by_user: dict[str, list[str]] = {}
        for user_id, device_id in devices:
            by_user.setdefault(user_id, []).append(device_id)
        if not by_user:
            return

        async def pipelined() -> None:
            # One script per user, all in one round trip; no MULTI, users are independent.
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, device_ids in by_user.items():
                    await self._refresh(
                        keys=[self._key(user_id)], args=[ttl, *device_ids], client=pipe
                    )
                await pipe.execute()

        await self._call(pipelined)

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return set()

        async def counted() -> list[int]:
            counts: list[int] = []
            for start in range(0, len(users), ONLINE_KEYS_PER_CALL):
                keys = [
                    self._key(user_id) for user_id in users[start : start + ONLINE_KEYS_PER_CALL]
                ]
                counts += await self._online(keys=keys)
            return counts

        counts = await self._call(counted)
        return {user_id for user_id, count in zip(users, counts, strict=True) if count}

    async def close(self) -> None:
        # Entries are left to expire: other instances may still read them, and this
        # instance's sockets leave() their devices as they close.
        await self._redis.aclose()
