"""The one place that picks adapters: embedded or real, from the settings.

Empty URLs select the embedded backends (SQLite, in-process bus, in-memory cache);
`AGORA_DATABASE_URL`, `AGORA_REDIS_URL` and `AGORA_AMQP_URL` select the real ones.
Messaging's own adapters follow `AGORA_USERS_GRPC_TARGET`, `AGORA_MEDIA_URL` and
`AGORA_NOTIFY_URL`. Real adapters are imported only when chosen, so the embedded
app needs none of their client libraries.
"""

from __future__ import annotations

from agora.adapters.counters_cache import CacheCounters
from agora.adapters.presence_memory import MemoryPresence
from agora.adapters.pubsub_memory import MemoryPubSub
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.ports.backends import Backends
from agora.ports.bus import Bus, Topology
from agora.ports.cache import Cache
from agora.ports.counters import Counters
from agora.ports.media import MediaStore
from agora.ports.notify import Notifier
from agora.ports.presence import Presence
from agora.ports.pubsub import PubSub
from agora.ports.users import UserDirectory
from agora.services.messaging.ports import MessagingAdapters

MESSAGING_CLIENT = "messaging"  # messaging's client id towards auth's UserService


def build_cache(settings: Settings) -> Cache:
    if settings.redis_url:
        from agora.adapters.cache_redis import RedisCache

        return RedisCache(settings.redis_url, namespace=settings.redis_namespace)
    from agora.adapters.cache_memory import MemoryCache

    return MemoryCache()


def build_counters(settings: Settings, cache: Cache) -> Counters:
    if settings.redis_url:
        from agora.adapters.counters_redis import RedisCounters

        return RedisCounters(
            settings.redis_url,
            namespace=settings.redis_namespace,
            flush_interval=settings.rate_limit_flush_interval,
            max_batch=settings.rate_limit_max_batch,
        )
    return CacheCounters(cache)  # the embedded cache: a count is a dict lookup


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


def build_backends(settings: Settings) -> Backends:
    from agora.services.messaging.contacts import ConversationContacts

    database = Database(settings.resolved_database_url)
    cache = build_cache(settings)
    return Backends(
        database=database,
        cache=cache,
        counters=build_counters(settings, cache),
        bus=build_bus(settings),
        pubsub=build_pubsub(settings),
        presence=build_presence(settings),
        # Messaging's members, read in the same database (social's chat reach).
        contacts=ConversationContacts(database),
    )


def build_user_directory(settings: Settings, backends: Backends) -> UserDirectory:
    if settings.users_grpc_target:
        from agora.adapters.users_grpc import GrpcUserDirectory
        from agora.security.client_secrets import client_secrets

        # Messaging calls auth as a service (it looks up people not yet the user's
        # contacts): AGORA_INTROSPECTION_SECRET, else the secret derived from the JWT one.
        password = client_secrets(settings).password_for(MESSAGING_CLIENT)
        return GrpcUserDirectory(
            settings.users_grpc_target,
            deadline=settings.users_grpc_deadline,
            retries=settings.users_grpc_retries,
            client=(MESSAGING_CLIENT, password) if password else None,
        )
    from agora.services.auth.user_directory import LocalUserDirectory

    return LocalUserDirectory(backends.database)


def build_media_store(settings: Settings) -> MediaStore:
    if settings.media_url:
        from agora.adapters.media_http import HttpMediaStore

        token = settings.media_token.get_secret_value() if settings.media_token else None
        return HttpMediaStore(settings.media_url, token=token)
    from agora.adapters.media_disk import DiskMediaStore

    return DiskMediaStore(settings.resolved_media_dir)


def build_notifier(settings: Settings) -> Notifier:
    if settings.notify_url:
        from agora.adapters.notify_webhook import WebhookNotifier

        return WebhookNotifier(settings.notify_url)
    from agora.adapters.notify_log import LogNotifier

    return LogNotifier()


def build_messaging_adapters(settings: Settings, backends: Backends) -> MessagingAdapters:
    return MessagingAdapters(
        users=build_user_directory(settings, backends),
        media=build_media_store(settings),
        notifier=build_notifier(settings),
    )
