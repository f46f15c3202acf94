"""Typing indicators in a conversation topic: ephemeral, and stopping by themselves.

`typing:start` from a device is an event on the topic's room (`Rooms.emit`); every
instance with sockets in the topic pushes
`{"event": "typing", "payload": {"conversation_id", "user_id", "typing": true}}` to them
(not to the typist's own devices) and arms a timer for (topic, user). Another start
re-arms it; `typing:stop`, the typist leaving the topic, or the timer running out
(`messaging_typing_ttl` without a refresh) pushes `"typing": false` once. The timers
are per receiving instance, so an indicator stops even if the typist's instance dies
without a word; nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agora.realtime.connection import Connection
from agora.realtime.rooms import Rooms
from agora.services.messaging.socket.protocol import push

log = logging.getLogger("agora.messaging.typing")

KIND = "typing"


def typing_frame(topic: str, user_id: str, typing: bool) -> str:
    conversation_id = topic.partition(":")[2]
    return push(
        topic,
        "typing",
        {"conversation_id": conversation_id, "user_id": user_id, "typing": typing},
    )


class TypingIndicators:
    def __init__(self, rooms: Rooms, ttl: float) -> None:
        self.rooms = rooms
        self.ttl = ttl
        self.timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (topic, user)
        self.typing: dict[Connection, set[str]] = {}  # socket -> topics it said it types in

    async def start(self) -> None:
        self.rooms.on(KIND, self._on_event)

    async def stop(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    # --- what a device says ----------------------------------------------------------------

    async def started(self, topic: str, conn: Connection) -> None:
        self.typing.setdefault(conn, set()).add(topic)
        await self.rooms.emit(topic, {"kind": KIND, "user_id": conn.user_id, "typing": True})

    async def stopped(self, topic: str, conn: Connection) -> None:
        topics = self.typing.get(conn)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self.typing[conn]
        await self.rooms.emit(topic, {"kind": KIND, "user_id": conn.user_id, "typing": False})

    async def gone(self, conn: Connection, topics: frozenset[str] | None = None) -> None:
        """`conn` leaves `topics` (all when None): stop what it was typing there."""
        typing = self.typing.get(conn, set())
        for topic in sorted(typing if topics is None else typing & topics):
            try:
                await self.stopped(topic, conn)
            except Exception:  # the receivers' timers stop it anyway
                log.warning("typing stop not sent on %s", topic, exc_info=True)

    # --- every instance with sockets in the topic ---------------------------------------------

    def _on_event(self, topic: str, event: dict[str, Any]) -> None:
        user_id, typing = event.get("user_id"), event.get("typing")
        if not isinstance(user_id, str) or not isinstance(typing, bool):
            log.warning("malformed typing event on %s", topic)
            return
        key = (topic, user_id)
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if typing:
            loop = asyncio.get_running_loop()
            self.timers[key] = loop.call_later(self.ttl, self._expire, topic, user_id)
        elif timer is None:
            return  # not typing here (already expired, or never seen): nothing to stop
        self.rooms.deliver(topic, typing_frame(topic, user_id, typing), except_user=user_id)

    def _expire(self, topic: str, user_id: str) -> None:
        self.timers.pop((topic, user_id), None)
        self.rooms.deliver(topic, typing_frame(topic, user_id, False), except_user=user_id)
