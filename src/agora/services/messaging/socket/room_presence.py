"""Who is in a conversation right now: presence per topic, per user, across instances.

A user is present in `conversation:<id>` while at least one of their devices, on any
instance, has joined that topic. The Presence port keeps one entry per (topic, user)
with a TTL (ids `conversation:<id>:<user>` under a scope of their own, see
`realtime.scoped_presence`), so its booleans say when a user's first device arrives and
their last leaves, whichever instances they are on. Those transitions are room events
(`Rooms.emit`, kind `presence`); each instance forwards to its sockets of the topic
only what changes what it last told them (`known`):

    {"topic": "conversation:7", "event": "presence_diff",
     "payload": {"joins": {"42": {"metas": [{"phx_ref": "42"}]}}, "leaves": {}}, "ref": null}

A joining socket gets `presence_state` `{"42": {"metas": [...]}, ...}` (asked of the port after it
joined, itself included), then the diffs that came after it subscribed. Every
`recheck_interval` each instance asks the port about its topics' members and sends
what no event said (the users of a crashed instance, whose entries expire); every
TTL/3 it refreshes the entries of its own sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from agora.core.background import Periodic
from agora.ports.presence import Presence
from agora.realtime.connection import Connection
from agora.realtime.rooms import Rooms
from agora.services.messaging.socket.protocol import presence_diff, presence_state

log = logging.getLogger("agora.messaging.presence")

KIND = "presence"


def diff_frame(topic: str, joins: Iterable[str], leaves: Iterable[str]) -> str:
    return presence_diff(topic, joins, leaves)


def state_frame(topic: str, online: Iterable[str]) -> str:
    return presence_state(topic, online)


class RoomPresence:
    def __init__(self, presence: Presence, rooms: Rooms, *, ttl: float, recheck_interval: float):
        self.presence = presence
        self.rooms = rooms
        self.ttl = ttl
        self.recheck_interval = recheck_interval
        self.members: dict[str, tuple[str, ...]] = {}  # topic -> the conversation's members
        self.known: dict[str, set[str]] = {}  # topic -> present users last told to sockets
        # Topic -> {user: present} from events that came while its first local socket was
        # asking the port: they are newer than that answer.
        self._early: dict[str, dict[str, bool]] = {}
        self._periodic = Periodic()

    @staticmethod
    def key(topic: str, user_id: str) -> str:
        return f"{topic}:{user_id}"

    async def start(self) -> None:
        self.rooms.on(KIND, self._on_event)
        self.rooms.on("members", self._on_members)
        self._periodic.start(
            (self.ttl / 3, self.refresh, "room-refresh"),
            (self.recheck_interval, self.recheck, "room-recheck"),
        )

    @property
    def alive(self) -> bool:
        """Both periodic tasks (refresh and recheck) run."""
        return self._periodic.alive

    async def stop(self) -> None:
        await self._periodic.stop()

    # --- this instance's sockets -----------------------------------------------------------

    async def join(self, topic: str, conn: Connection, members: Sequence[str]) -> set[str]:
        """`conn` (in the room already) is present; returns who is present now."""
        self.members[topic] = tuple(members)
        first_here = topic not in self.known and topic not in self._early
        if first_here:
            self._early[topic] = {}
        try:
            arrived = await self.presence.join(
                self.key(topic, conn.user_id), conn.device_id, self.ttl
            )
            online = await self._online(topic)
        finally:
            early = self._early.pop(topic, {}) if first_here else {}
        online.add(conn.user_id)
        if first_here:
            state = set(online)
            for user_id, present in early.items():
                (state.add if present else state.discard)(user_id)
            self.known[topic] = state
        if arrived:
            await self.rooms.emit(topic, {"kind": KIND, "user_id": conn.user_id, "present": True})
        return online

    async def leave(self, topic: str, conn: Connection) -> None:
        """`conn` leaves the topic (call before `Rooms.leave`)."""
        gone = await self.presence.leave(self.key(topic, conn.user_id), conn.device_id)
        if gone:
            await self.rooms.emit(topic, {"kind": KIND, "user_id": conn.user_id, "present": False})

    def forget(self, topic: str) -> None:
        """No socket of this instance is left in the topic."""
        if not self.rooms.local(topic):
            self.members.pop(topic, None)
            self.known.pop(topic, None)

    async def refresh(self) -> None:
        devices = [
            (self.key(topic, conn.user_id), conn.device_id)
            for topic in self.known
            for conn in self.rooms.local(topic)
        ]
        if devices:
            await self.presence.refresh(devices, self.ttl)

    async def recheck(self) -> None:
        for topic in list(self.known):
            online = await self._online(topic)
            known = self.known.get(topic)
            if known is not None:
                self._apply(topic, known, online)

    async def _online(self, topic: str) -> set[str]:
        keys = {self.key(topic, user_id): user_id for user_id in self.members.get(topic, ())}
        return {keys[key] for key in await self.presence.online(keys)}

    # --- events from every instance ------------------------------------------------------------

    def _on_event(self, topic: str, event: dict[str, Any]) -> None:
        user_id, present = event.get("user_id"), event.get("present")
        if not isinstance(user_id, str) or not isinstance(present, bool):
            log.warning("malformed presence event on %s", topic)
            return
        early = self._early.get(topic)
        if early is not None:  # the first socket here is still asking: it gets this after
            early[user_id] = present
            change = [user_id]
            self.rooms.deliver(
                topic, diff_frame(topic, change if present else [], [] if present else change)
            )
            return
        known = self.known.get(topic)
        if known is not None:
            self._apply(topic, known, (known | {user_id}) if present else (known - {user_id}))

    def _on_members(self, topic: str, event: dict[str, Any]) -> None:
        members = event.get("members")
        if topic in self.members and isinstance(members, list):
            self.members[topic] = tuple(str(member) for member in members)

    def _apply(self, topic: str, known: set[str], now: set[str]) -> None:
        joins, leaves = now - known, known - now
        if joins or leaves:
            known.clear()
            known.update(now)
            self.rooms.deliver(topic, diff_frame(topic, joins, leaves))
