"""The local devices of each user, and delivery to a user's devices on every instance.

`deliver(user_id, frame)` publishes the frame on the user's channel; every instance
that has a device of that user is subscribed to that channel (from its first local
device to its last) and queues the frame on each of them. The frame is serialized
once by the sender and never parsed again on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from agora.ports.pubsub import PubSubUnavailable
from agora.realtime.channels import ChannelRouter
from agora.realtime.connection import Connection

log = logging.getLogger("agora.realtime.hub")


class Hub:
    def __init__(self, router: ChannelRouter, channel_prefix: str) -> None:
        """`channel_prefix` + user id is a user's channel, e.g. `agora:social:user:42`."""
        self.router = router
        self.prefix = channel_prefix
        self.devices: dict[str, set[Connection]] = {}

    def channel(self, user_id: str) -> str:
        return self.prefix + user_id

    async def start(self) -> None:
        self.router.route(self.prefix, self._on_message)

    async def stop(self) -> None:
        self.router.unroute(self.prefix, self._on_message)

    async def add(self, conn: Connection) -> None:
        self.devices.setdefault(conn.user_id, set()).add(conn)
        await self.router.subscribe(self.channel(conn.user_id))

    async def remove(self, conn: Connection) -> None:
        devices = self.devices.get(conn.user_id)
        if devices is None or conn not in devices:
            return
        devices.discard(conn)
        if not devices:
            del self.devices[conn.user_id]
        await self.router.unsubscribe(self.channel(conn.user_id))

    def local(self, user_id: str) -> Iterable[Connection]:
        return tuple(self.devices.get(user_id, ()))

    def connections(self) -> list[Connection]:
        return [conn for devices in self.devices.values() for conn in devices]

    async def deliver(self, user_id: str, frame: str) -> None:
        """Publish `frame` to the user's devices; PubSubUnavailable if it cannot reach
        them: the backend is down, or the user has a device here and this instance's
        subscription is reconnecting (the message would reach the bus but not them).
        A caller acknowledges only once this returns (issue 15 §3)."""
        if user_id in self.devices and not self.router.pubsub.listening():
            raise PubSubUnavailable("this instance's subscription is reconnecting")
        await self.router.pubsub.publish(self.channel(user_id), frame.encode())

    def _on_message(self, channel: str, message: bytes) -> None:
        devices = self.devices.get(channel[len(self.prefix) :])
        if not devices:
            return
        frame = message.decode()
        for conn in tuple(devices):
            conn.send(frame)
