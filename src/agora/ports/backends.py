"""The external systems every service talks to, as ports: one bundle, chosen elsewhere.

`agora.runtime.backends.build_backends` picks the adapters from the settings (embedded
or real). The embedded app shares one `Backends` between its services; a service run
alone gets its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.db.engine import Database
from agora.ports.bus import Bus
from agora.ports.cache import Cache
from agora.ports.contacts import Contacts
from agora.ports.counters import Counters
from agora.ports.presence import Presence
from agora.ports.pubsub import PubSub


@dataclass
class Backends:
    database: Database
    cache: Cache
    bus: Bus
    pubsub: PubSub
    presence: Presence
    # Who shares a conversation with whom (social's chat reach); None: nobody.
    contacts: Contacts | None = None
    # The rate limiters' event counts; None: counted with the cache's own `incr`.
    counters: Counters | None = None

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()
        await self.pubsub.close()
        await self.presence.close()
        if self.counters is not None:
            await self.counters.close()
        await self.cache.close()
        await self.database.close()
