"""Rooms: topics that sockets join, and fan-out to a topic's sockets on every instance.

A room is a topic name (`conversation:7`). Each topic has one pub/sub channel,
`<prefix>room:<topic>`, that an instance subscribes to from its first local socket in
the topic to its last (counted by `ChannelRouter`), so whatever is published there
reaches the topic's sockets on every instance. Two kinds of message travel on it:

- frames (`broadcast`): serialized once by the sender, queued unchanged on each local
  socket of the topic, except those of `except_user` (a typist does not see their own
  typing);
- events (`emit`): small JSON facts such as `{"kind": "typing", ...}`, handed on each
  instance to the handlers registered for their kind (`on`). A handler keeps whatever
  every instance must keep for itself (a typing timer, the presence it last told its
  sockets) and `deliver`s frames to its local sockets.

Handlers are plain functions run on the pub/sub delivery task: they only queue.

A socket that joins with `hold=True` gets nothing of the topic until `release`: the
joiner first answers the join (its reply, a presence snapshot), then receives what
happened since it subscribed, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from agora.realtime.channels import ChannelRouter
from agora.realtime.codes import SLOW_CONSUMER
from agora.realtime.connection import Connection, frame_cost

log = logging.getLogger("agora.realtime.rooms")

RoomHandler = Callable[[str, dict[str, Any]], None]  # (topic, event)

_FRAME = b"F"  # F<except_user>\n<frame>
_EVENT = b"E"  # E<event JSON>


class Held:
    """Frames kept for one socket until it is ready, bounded as its queue is: a socket
    that would be a slow consumer with them queued is one already."""

    __slots__ = ("conn", "frames", "size")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.frames: list[str] = []
        self.size = 0

    def add(self, frame: str) -> None:
        self.size += frame_cost(frame)
        if self.size + self.conn.queued_bytes > self.conn.max_queued_bytes:
            self.frames.clear()
            self.conn.close(SLOW_CONSUMER)
            return
        self.frames.append(frame)

    def release(self) -> None:
        for frame in self.frames:
            self.conn.send(frame)
        self.frames.clear()


class Rooms:
    def __init__(self, router: ChannelRouter, prefix: str) -> None:
        """`prefix` + `room:` + topic is a topic's channel, e.g. `agora:messaging:room:...`."""
        self.router = router
        self.prefix = f"{prefix}room:"
        self.members: dict[str, set[Connection]] = {}  # topic -> local sockets
        self.joined: dict[Connection, set[str]] = {}  # socket -> its topics
        self._held: dict[tuple[str, Connection], Held] = {}
        self._handlers: dict[str, list[RoomHandler]] = {}

    def channel(self, topic: str) -> str:
        return self.prefix + topic

    async def start(self) -> None:
        self.router.route(self.prefix, self._on_message)

    async def stop(self) -> None:
        self.router.unroute(self.prefix, self._on_message)

    def on(self, kind: str, handler: RoomHandler) -> None:
        """Events of `kind` emitted on any topic go to `handler(topic, event)`."""
        self._handlers.setdefault(kind, []).append(handler)

    # --- membership ------------------------------------------------------------------------

    async def join(self, topic: str, conn: Connection, *, hold: bool = False) -> bool:
        """Add `conn` to the topic; False if it was in it already (nothing changes)."""
        topics = self.joined.setdefault(conn, set())
        if topic in topics:
            return False
        topics.add(topic)
        self.members.setdefault(topic, set()).add(conn)
        if hold:
            self._held[(topic, conn)] = Held(conn)
        await self.router.subscribe(self.channel(topic))
        return True

    def release(self, topic: str, conn: Connection) -> None:
        """Send what was held for `conn` in the topic, and stop holding."""
        held = self._held.pop((topic, conn), None)
        if held is not None:
            held.release()

    async def leave(self, topic: str, conn: Connection) -> bool:
        """Remove `conn` from the topic; False if it was not in it."""
        topics = self.joined.get(conn)
        if topics is None or topic not in topics:
            return False
        topics.discard(topic)
        if not topics:
            del self.joined[conn]
        members = self.members.get(topic)
        if members is not None:
            members.discard(conn)
            if not members:
                del self.members[topic]
        self._held.pop((topic, conn), None)
        await self.router.unsubscribe(self.channel(topic))
        return True

    async def leave_all(self, conn: Connection) -> list[str]:
        """Remove a closing socket from every topic; the topics it was in."""
        topics = sorted(self.joined.get(conn, ()))
        for topic in topics:
            await self.leave(topic, conn)
        return topics

    def is_member(self, topic: str, conn: Connection) -> bool:
        return topic in self.joined.get(conn, ())

    def topics_of(self, conn: Connection) -> frozenset[str]:
        return frozenset(self.joined.get(conn, ()))

    def local(self, topic: str) -> tuple[Connection, ...]:
        return tuple(self.members.get(topic, ()))

    def topics(self) -> list[str]:
        """The topics with a socket on this instance."""
        return list(self.members)

    # --- fan-out ---------------------------------------------------------------------------

    async def broadcast(self, topic: str, frame: str, *, except_user: str | None = None) -> None:
        """Queue `frame` on the topic's sockets on every instance (raises PubSubUnavailable)."""
        head = (except_user or "").encode()
        if b"\n" in head:
            raise ValueError("a user id cannot hold a newline")
        await self.router.pubsub.publish(
            self.channel(topic), b"".join((_FRAME, head, b"\n", frame.encode()))
        )

    async def emit(self, topic: str, event: dict[str, Any]) -> None:
        """Hand `event` (with a `kind`) to its handlers on every instance with the topic."""
        if not isinstance(event.get("kind"), str):
            raise ValueError("an event has a kind")
        await self.router.pubsub.publish(self.channel(topic), _EVENT + orjson.dumps(event))

    def deliver(
        self,
        topic: str,
        frame: str,
        *,
        except_user: str | None = None,
        except_conn: Connection | None = None,
    ) -> None:
        """Queue `frame` on this instance's sockets of the topic (held ones keep it)."""
        for conn in tuple(self.members.get(topic, ())):
            if conn is except_conn or (except_user is not None and conn.user_id == except_user):
                continue
            held = self._held.get((topic, conn))
            if held is not None:
                held.add(frame)
            else:
                conn.send(frame)

    def _on_message(self, channel: str, message: bytes) -> None:
        topic = channel[len(self.prefix) :]
        if topic not in self.members:
            return
        kind, body = message[:1], message[1:]
        if kind == _FRAME:
            head, _, frame = body.partition(b"\n")
            self.deliver(topic, frame.decode(), except_user=head.decode() or None)
            return
        if kind == _EVENT:
            try:
                event = orjson.loads(body)
                handlers = self._handlers.get(event["kind"], ())
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("malformed room event on %s", channel)
                return
            for handler in tuple(handlers):
                try:
                    handler(topic, event)
                except Exception:  # one handler's bug must not starve the others
                    log.exception("room handler failed on %s", channel)
            return
        log.warning("unknown room message on %s", channel)
