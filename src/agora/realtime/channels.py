"""One pub/sub handler per process, routing each channel to its owner by prefix.

The PubSub port takes a single handler (`start(handler)`), yet in the embedded app
several services share one `Backends.pubsub` (social's deliveries, presence, session
notices, later messaging's). `ChannelRouter.of(pubsub)` is the one router of a pubsub
object; each owner registers the channel prefixes it handles, and the first `start`
starts the pubsub.

Handlers are plain functions, not coroutines: they run on the pubsub's one delivery
task, so they only hand the message to local queues and never wait on a client.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from agora.ports.pubsub import PubSub

log = logging.getLogger("agora.realtime.channels")

ChannelHandler = Callable[[str, bytes], None]

_routers: weakref.WeakKeyDictionary[PubSub, ChannelRouter] = weakref.WeakKeyDictionary()


class ChannelRouter:
    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        # prefix -> handlers; one prefix may have several (two services' session watches).
        self._routes: dict[str, list[ChannelHandler]] = {}
        self._counts: dict[str, int] = {}  # channel -> subscribers in this process
        self._started = False

    @classmethod
    def of(cls, pubsub: PubSub) -> ChannelRouter:
        router = _routers.get(pubsub)
        if router is None:
            router = _routers[pubsub] = cls(pubsub)
        return router

    def route(self, prefix: str, handler: ChannelHandler) -> None:
        """Messages on channels starting with `prefix` go to `handler`."""
        if any(
            known != prefix and (prefix.startswith(known) or known.startswith(prefix))
            for known in self._routes
        ):
            raise ValueError(f"channel prefix {prefix!r} overlaps another route")
        self._routes.setdefault(prefix, []).append(handler)

    def unroute(self, prefix: str, handler: ChannelHandler) -> None:
        handlers = self._routes.get(prefix, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._routes.pop(prefix, None)

    async def subscribe(self, *channels: str) -> None:
        """Counted: the pubsub is asked only for a channel's first subscriber."""
        first = []
        for channel in channels:
            count = self._counts.get(channel, 0)
            self._counts[channel] = count + 1
            if count == 0:
                first.append(channel)
        if first:
            await self.pubsub.subscribe(*first)

    async def unsubscribe(self, *channels: str) -> None:
        last = []
        for channel in channels:
            count = self._counts.get(channel, 0)
            if count <= 1:
                self._counts.pop(channel, None)
                if count == 1:
                    last.append(channel)
            else:
                self._counts[channel] = count - 1
        if not last:
            return
        await self.pubsub.unsubscribe(*last)
        # Subscribed again while we unsubscribed: that subscribe may have gone out
        # before our unsubscribe, so make sure it holds (subscribe is idempotent).
        again = [channel for channel in last if channel in self._counts]
        if again:
            await self.pubsub.subscribe(*again)

    def subscribers(self, channel: str) -> int:
        return self._counts.get(channel, 0)

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.pubsub.start(self._dispatch)

    async def _dispatch(self, channel: str, message: bytes) -> None:
        for prefix, handlers in self._routes.items():
            if channel.startswith(prefix):
                for handler in tuple(handlers):
                    try:
                        handler(channel, message)
                    except Exception:  # one bad message must not stop the others
                        log.exception("handler of %s failed", channel)
                return
