"""The external systems a service talks to, chosen from settings.

Empty URLs select the embedded backends (SQLite, in-process bus, in-memory cache);
`AGORA_DATABASE_URL`, `AGORA_REDIS_URL` and `AGORA_AMQP_URL` select the real ones. One
`Backends` is shared by every service mounted in the embedded app; a service run alone
builds its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.db.engine import Database
from agora.ports.bus import Bus, Topology
from agora.ports.cache import Cache
from agora.ports.presence import Presence
from agora.ports.pubsub import PubSub
from agora.core.settings import Settings


def build_cache(settings: Settings) -> Cache:
    if settings.redis_url:
        from agora.adapters.cache_redis import RedisCache

        return RedisCache(settings.redis_url, namespace=settings.redis_namespace)
    from agora.adapters.cache_memory import MemoryCache

    return MemoryCache()


def build_bus(settings: Settings) -> Bus:
    topology = Topology().suffixed(settings.amqp_name_suffix)
    if settings.amqp_url:
        from agora.adapters.bus_amqp import AmqpBus, TlsFiles

        tls = TlsFiles(settings.amqp_ca_file, settings.amqp_cert_file, settings.amqp_key_file)
        return AmqpBus(settings.amqp_url, topology, tls=tls)
    from agora.adapters.bus_memory import MemoryBus

    return MemoryBus(topology)


def build_pubsub(settings: Settings) -> PubSub:
    if settings.redis_url:
        from agora.adapters.pubsub_redis import RedisPubSub

        return RedisPubSub(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryPubSub()


def build_presence(settings: Settings) -> Presence:
    if settings.redis_url:
        from agora.adapters.presence_redis import RedisPresence

        return RedisPresence(settings.redis_url, namespace=settings.redis_namespace)
    return MemoryPresence()


@dataclass
class Backends:
    database: Database
    cache: Cache
    bus: Bus
    pubsub: PubSub = field(default_factory=MemoryPubSub)
    presence: Presence = field(default_factory=MemoryPresence)

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        return cls(
            database=Database(settings.resolved_database_url),
            cache=build_cache(settings),
            bus=build_bus(settings),
            pubsub=build_pubsub(settings),
            presence=build_presence(settings),
        )

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()
        await self.pubsub.close()
        await self.presence.close()
        await self.cache.close()
        await self.database.close()
