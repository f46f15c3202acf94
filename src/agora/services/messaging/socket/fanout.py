"""The socket fan-out: messaging's `MessagingEvents` port (`..ports`) over the sockets.

`MessagingService` calls `publish(members, "message:new", message_json)` after a commit;
every socket device of each member that joined its `user:<id>` topic receives
`{"topic": "user:<id>", "event": ..., "payload": ..., "ref": null}`, on whichever
instance it is connected to. The payload is serialized once per publish, and published
once, whatever the number of members: `[event, [user ids]]`, a newline, the payload, on
the channel every messaging instance listens to (`<key_prefix>messaging:user:*`,
subscribed from `start` to `stop`). Each instance reads that message once and wraps the
payload in the envelope of each member that has a joined device there (before: one
message per member, on the member's own channel, which every instance with a device of
that member parsed: 50 `PUBLISH`es and 50 reads for a 50-member group). The cost moved
is the other way round: every instance reads every message, members or not.

Publishing is queued, in order, and sent by one task (issue 13): `publish` returns once
the event is queued, so a sender's next message is not held up by this one's round trip
to Redis, and what queued up meanwhile goes out in one call (`publish_many`). Events
leave in the order they were queued, as one awaited call after another did. Two bounds:
a `conversation:updated` waits until it is sent (the rooms are told of the membership
after it, as before), and `MAX_QUEUED` events waiting make `publish` wait for them
(a slow Redis slows the senders, and memory stays bounded). `stop` sends what is queued.

Delivery is live only: the durable path is the database, and a device that was away
catches up on join (`MessagingService.catch_up`). A pub/sub outage is logged, never
raised: the message is stored, and the service must not fail the sender for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson

from agora.core.metrics import DELIVERIES_PUSHED
from agora.ports.presence import PresenceUnavailable
from agora.realtime.connection import Connection
from agora.realtime.hub import Hub
from agora.realtime.presence import PresenceTracker
from agora.realtime.rooms import Held, Rooms
from agora.services.messaging.socket.protocol import presence_diff, push_serialized

log = logging.getLogger("agora.messaging.events")

CONVERSATION_UPDATED = "conversation:updated"
# How a conversation:updated frame starts its event field (push_serialized's layout),
# so the frames of every other event are passed on without being parsed.
_UPDATED_MARK = '"event":"conversation:updated"'
# The hub channel suffix of the one message per publish (a user id is never "*").
EVERYONE = "*"
MAX_QUEUED = 256  # events queued for the pub/sub before `publish` waits for them


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class MessagingFanout:
    """`MessagingEvents` over a Hub holding every messaging socket of this instance.

    The hub's channels are subscribed from a user's first socket to their last (the
    endpoint adds and removes sockets); this class, not the hub, takes the channel's
    messages (`start` routes the hub's prefix here; the hub itself is never started)
    and queues each frame only on the sockets that joined their user topic.
    """

    def __init__(
        self,
        hub: Hub,
        presence: PresenceTracker,
        rooms: Rooms | None = None,
        *,
        max_contacts: int = 500,
    ) -> None:
        self.hub = hub
        self.presence = presence
        self.rooms = rooms  # told of membership changes, to drop removed members
        self.max_contacts = max_contacts  # users whose presence one socket follows
        self.joined: set[Connection] = set()
        self._held: dict[Connection, Held] = {}
        self._follows: set[asyncio.Task[None]] = set()
        self._queued: list[tuple[str, int, bytes]] = []  # (event, members, message)
        self._queued_sent: asyncio.Future[None] | None = None  # resolved once they are sent
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.hub.router.route(self.hub.prefix, self._on_message)
        await self.hub.router.subscribe(self.hub.channel(EVERYONE))

    async def stop(self) -> None:
        if self._sender is not None:  # what was queued before the stop goes out
            await asyncio.gather(self._sender, return_exceptions=True)
        self.hub.router.unroute(self.hub.prefix, self._on_message)
        await self.hub.router.unsubscribe(self.hub.channel(EVERYONE))
        for task in tuple(self._follows):
            task.cancel()

    # --- the port --------------------------------------------------------------------------

    async def publish(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        users = list(dict.fromkeys(user_ids))
        # orjson writes no raw newline: the first one ends the header.
        message = orjson.dumps([event, users]) + b"\n" + orjson.dumps(payload)
        sent = self._queue_event(event, len(users), message)
        if event == CONVERSATION_UPDATED or len(self._queued) >= MAX_QUEUED:
            await asyncio.shield(sent)  # a cancelled caller does not cancel the send
        if event == CONVERSATION_UPDATED and self.rooms is not None:
            await self._membership(payload)

    def _queue_event(self, event: str, members: int, message: bytes) -> asyncio.Future[None]:
        """Queue `message`; the future resolves once it is sent (or failed, logged)."""
        if self._queued_sent is None:
            self._queued_sent = asyncio.get_running_loop().create_future()
        sent = self._queued_sent
        self._queued.append((event, members, message))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_queued())
        return sent

    async def _send_queued(self) -> None:
        """Until the queue is empty: everything queued, in order, in one call."""
        channel = self.hub.channel(EVERYONE)
        pubsub = self.hub.router.pubsub
        try:
            while self._queued:
                batch, sent = self._queued, self._queued_sent
                self._queued, self._queued_sent = [], None
                try:
                    if len(batch) == 1:
                        await pubsub.publish(channel, batch[0][2])
                    else:
                        await pubsub.publish_many([(channel, message) for _, _, message in batch])
                except Exception:  # stored already: the devices catch up on their next join
                    log.warning(
                        "%d events (%s) not pushed to their %d users",
                        len(batch),
                        ", ".join(sorted({event for event, _, _ in batch})),
                        sum(members for _, members, _ in batch),
                        exc_info=True,
                    )
                finally:
                    if sent is not None and not sent.done():
                        sent.set_result(None)
        finally:
            self._sender = None
            # Cancelled (the loop is ending): nobody waits for what is left; a later
            # publish sends it.
            if self._queued_sent is not None and not self._queued_sent.done():
                self._queued_sent.set_result(None)
                self._queued_sent = None

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """Who has a live socket; nobody when presence is unreachable (the caller then
        notifies everyone: a duplicate notification beats a lost one)."""
        try:
            return await self.presence.online(user_ids)
        except PresenceUnavailable:
            log.warning("presence unreachable: treating every user as offline")
            return set()

    async def _membership(self, conversation: dict[str, Any]) -> None:
        conversation_id, members = conversation.get("id"), conversation.get("members")
        if not isinstance(conversation_id, str) or not isinstance(members, list):
            return
        assert self.rooms is not None
        try:
            await self.rooms.emit(
                conversation_topic(conversation_id), {"kind": "members", "members": members}
            )
        except Exception:  # pub/sub down: removed members keep the topic until they leave
            log.warning("membership of %s not broadcast", conversation_id, exc_info=True)

    # --- sockets of this instance ----------------------------------------------------------

    def join(self, conn: Connection, *, hold: bool = False) -> None:
        """`conn` joined its user topic; with `hold`, keep its pushes until `release`."""
        self.joined.add(conn)
        if hold and conn not in self._held:
            self._held[conn] = Held(conn)

    def release(self, conn: Connection) -> None:
        held = self._held.pop(conn, None)
        if held is not None:
            held.release()

    def leave(self, conn: Connection) -> None:
        self.joined.discard(conn)
        self._held.pop(conn, None)

    def _on_message(self, channel: str, message: bytes) -> None:
        user = channel[len(self.hub.prefix) :]
        if user != EVERYONE:  # one user's frame, as earlier versions publish (rolling deploys)
            devices = self._joined_devices(user)
            if devices:
                frame = message.decode()
                DELIVERIES_PUSHED.inc(len(devices))
                self._hand_over(devices, frame, _UPDATED_MARK in frame)
            return
        head, _, body = message.partition(b"\n")
        try:
            event, users = orjson.loads(head)
            payload = body.decode()
        except (orjson.JSONDecodeError, ValueError, TypeError, UnicodeDecodeError):
            log.warning("unreadable fan-out message on %s", channel)
            return
        updated = event == CONVERSATION_UPDATED
        pushed = 0
        for user in users:
            if not isinstance(user, str):
                continue
            devices = self._joined_devices(user)
            if devices:
                pushed += len(devices)
                self._hand_over(devices, push_serialized(user_topic(user), event, payload), updated)
        DELIVERIES_PUSHED.inc(pushed)  # once per message, not per member

    def _joined_devices(self, user: str) -> list[Connection]:
        return [conn for conn in self.hub.devices.get(user, ()) if conn in self.joined]

    def _hand_over(self, devices: list[Connection], frame: str, updated: bool) -> None:
        """Queue `frame` on `devices` (behind a catch-up when held), to leave at the end
        of the loop's turn with the other messages of this pub/sub read (`soon`: one
        write per device for them all); `updated`: a conversation:updated, whose new
        members the devices start following."""
        held = self._held
        for conn in devices:
            waiting = held.get(conn) if held else None
            if waiting is not None:
                waiting.add(frame)
            else:
                conn.send(frame, soon=True)
        if updated:
            self._follow_new_members(devices, frame)

    # --- presence of new contacts ----------------------------------------------------------

    def _follow_new_members(self, devices: list[Connection], frame: str) -> None:
        """A conversation gained members: the user's sockets follow their presence too,
        as they follow the contacts they had when they joined their user topic."""
        try:
            members = orjson.loads(frame)["payload"]["members"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if not isinstance(members, list):
            return
        for conn in devices:
            new = [m for m in members if isinstance(m, str) and m != conn.user_id]
            new = [m for m in new if m not in conn.watching]
            room = self.max_contacts - len(conn.watching)
            if new and room > 0:
                task = asyncio.create_task(self._follow(conn, new[:room]))
                self._follows.add(task)
                task.add_done_callback(self._follows.discard)

    async def _follow(self, conn: Connection, users: list[str]) -> None:
        try:
            online = await self.presence.watch(conn, users)
        except Exception:  # presence down: the next user-topic join follows them
            log.warning("presence of new contacts not followed", exc_info=True)
            return
        joins = sorted(user for user in users if user in online)
        if joins and conn in self.joined:
            conn.send(presence_diff(user_topic(conn.user_id), joins, ()))
