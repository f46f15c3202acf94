"""Presence per user across instances: join/leave when a user's first device arrives or
their last leaves, the periodic refresh of this instance's device entries, and the
watching of other users.

Transitions come from the Presence port's booleans (`join` says "was offline",
`leave` says "none left"), so they are per user, not per device, whichever instance
the devices are on. Each transition is published on the user's presence channel
(`<prefix>presence:<id>`, shared by every service that keeps presence); an instance
subscribes to the channels of the users its sockets watch and forwards each change to
the watchers. It keeps the last state it forwarded per watched user and forwards only
changes, so a duplicate event (two instances' last devices leaving at once) is sent
once, and a periodic recheck against the port itself catches what no event said: the
users of a crashed instance, whose entries simply expire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import orjson

from agora.core.background import Periodic
from agora.ports.presence import Presence
from agora.realtime.channels import ChannelRouter
from agora.realtime.connection import Connection
from agora.realtime.hub import Hub

log = logging.getLogger("agora.realtime.presence")

RECHECK_BATCH = 500

# (kind "join" | "leave", the user whose state changed, the watching user) -> the frame.
WatcherFrame = Callable[[str, str, str], str]


def presence_frame(kind: str, user_id: str) -> str:
    return orjson.dumps({"type": f"presence.{kind}", "userId": user_id}).decode()


class PresenceTracker:
    def __init__(
        self,
        presence: Presence,
        router: ChannelRouter,
        hub: Hub,
        *,
        channel_prefix: str,
        ttl: float,
        recheck_interval: float,
        watcher_frame: WatcherFrame | None = None,
    ) -> None:
        """`watcher_frame` builds the frames of a protocol whose frames name the watcher
        (messaging's `user:<id>` topic), once per watching user; by default every
        watcher gets social's `presence_frame`."""
        self.presence = presence
        self.router = router
        self.hub = hub
        self.prefix = channel_prefix
        self.ttl = ttl
        self.recheck_interval = recheck_interval
        self.watcher_frame = watcher_frame
        self.watchers: dict[str, set[Connection]] = {}
        self.known: dict[str, bool] = {}  # last state forwarded, per watched user
        self._periodic = Periodic()

    def channel(self, user_id: str) -> str:
        return self.prefix + user_id

    async def start(self) -> None:
        self.router.route(self.prefix, self._on_event)
        self._periodic.start(
            (self.ttl / 3, self.refresh, "presence-refresh"),
            (self.recheck_interval, self.recheck, "presence-recheck"),
        )

    @property
    def alive(self) -> bool:
        """Both periodic tasks (refresh and recheck) run."""
        return self._periodic.alive

    async def stop(self) -> None:
        await self._periodic.stop()
        self.router.unroute(self.prefix, self._on_event)

    # --- this instance's devices -------------------------------------------------------

    async def join(self, conn: Connection) -> None:
        if await self.presence.join(conn.user_id, conn.device_id, self.ttl):
            await self._publish(conn.user_id, "join")

    async def leave(self, conn: Connection) -> None:
        await self.unwatch(conn, tuple(conn.watching))
        if await self.presence.leave(conn.user_id, conn.device_id):
            await self._publish(conn.user_id, "leave")

    async def refresh(self) -> None:
        devices = [(conn.user_id, conn.device_id) for conn in self.hub.connections()]
        if devices:
            await self.presence.refresh(devices, self.ttl)

    async def _publish(self, user_id: str, kind: str) -> None:
        body = orjson.dumps({"kind": kind, "user_id": user_id})
        await self.router.pubsub.publish(self.channel(user_id), body)

    # --- other users ---------------------------------------------------------------------

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """Who has a live device. A user with one on this instance is online without
        asking the store, which holds what this instance put there (a message's offline
        check asks about every member: on Redis, a round trip saved when all are here)."""
        here: set[str] = set()
        elsewhere: list[str] = []
        devices = self.hub.devices
        for user_id in user_ids:
            if user_id in devices:
                here.add(user_id)
            else:
                elsewhere.append(user_id)
        if not elsewhere:
            return here
        return here | await self.presence.online(elsewhere)

    async def watch(self, conn: Connection, user_ids: Iterable[str]) -> set[str]:
        """Start forwarding the users' changes to `conn`; returns who is online now."""
        users = list(dict.fromkeys(user_ids))
        added = [user_id for user_id in users if user_id not in conn.watching]
        for user_id in added:
            conn.watch(user_id)
            self.watchers.setdefault(user_id, set()).add(conn)
        if added:
            # Subscribed before the snapshot: a change after it is not missed.
            await self.router.subscribe(*map(self.channel, added))
        online = await self.presence.online(users)
        for user_id in users:
            if user_id in self.watchers:
                self.known.setdefault(user_id, user_id in online)
        return online

    async def unwatch(self, conn: Connection, user_ids: Iterable[str]) -> None:
        removed = [user_id for user_id in user_ids if user_id in conn.watching]
        for user_id in removed:
            conn.unwatch(user_id)
            watchers = self.watchers.get(user_id)
            if watchers is not None:
                watchers.discard(conn)
                if not watchers:
                    del self.watchers[user_id]
                    self.known.pop(user_id, None)
        if removed:
            await self.router.unsubscribe(*map(self.channel, removed))

    async def recheck(self) -> None:
        """Ask the port about every watched user; forward what the events missed."""
        users = list(self.watchers)
        for start in range(0, len(users), RECHECK_BATCH):
            batch = users[start : start + RECHECK_BATCH]
            online = await self.presence.online(batch)
            for user_id in batch:
                self._transition(user_id, user_id in online)

    def _on_event(self, channel: str, message: bytes) -> None:
        user_id = channel[len(self.prefix) :]
        try:
            kind = orjson.loads(message).get("kind")
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("malformed presence event on %s", channel)
            return
        if kind in ("join", "leave"):
            self._transition(user_id, kind == "join")

    def _transition(self, user_id: str, online: bool) -> None:
        watchers = self.watchers.get(user_id)
        if not watchers or self.known.get(user_id) is online:
            return
        self.known[user_id] = online
        kind = "join" if online else "leave"
        if self.watcher_frame is None:
            frame = presence_frame(kind, user_id)
            for conn in tuple(watchers):
                conn.send(frame)
            return
        frames: dict[str, str] = {}  # watching user -> frame
        for conn in tuple(watchers):
            if conn.user_id not in frames:
                frames[conn.user_id] = self.watcher_frame(kind, user_id, conn.user_id)
            conn.send(frames[conn.user_id])
