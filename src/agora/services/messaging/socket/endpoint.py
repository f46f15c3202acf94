"""The messaging socket, `/socket/websocket?token=<ticket>` (docs/messaging.md §3).

Tickets, connection limits, queues, session ends and per-user presence are the
`realtime` package's, as for the social socket; this module says what each frame
means. Topics:

- `phoenix`: `heartbeat`.
- `user:<own id>`: join to receive message, receipt and conversation events of every
  conversation (with catch-ups and unread counts in the reply) and the presence of the
  members of one's conversations.
- `conversation:<id>` (members only): typing, presence in the conversation, and
  `message:send|edit|delete` and `read`, which call the same `MessagingService`
  methods as REST, with the same validation.

Every request gets a `phx_reply` with its `ref`, errors included; a frame that cannot be
read gets an error reply too, and the socket stays open. Frames are Phoenix's 2.0.0
arrays or 1.0.0 objects, as the `vsn` query parameter asks (`serializer`); a refused
ticket is an HTTP answer to the handshake (403), as a Phoenix server refuses `connect`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from agora.core.errors import AgoraError, Forbidden, Invalid, NotFound, ServiceUnavailable
from agora.core.metrics import SOCKET_JOINS
from agora.ports.presence import PresenceUnavailable
from agora.ports.pubsub import PubSubUnavailable
from agora.realtime.codes import CloseReason
from agora.realtime.connection import Connection
from agora.realtime.endpoint import Refused, SocketEndpoint, query_param
from agora.realtime.rooms import Rooms
from agora.services.messaging import validation
from agora.services.messaging.domain import Actor
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket.fanout import MessagingFanout
from agora.services.messaging.socket.protocol import (
    SYSTEM_TOPIC,
    WELCOME,
    BadFrame,
    BadRequest,
    Request,
    bad_frame,
    failed,
    ok,
    presence_state,
    push,
    reply,
)
from agora.services.messaging.socket.room_presence import RoomPresence
from agora.services.messaging.socket.send_window import SendWindow
from agora.services.messaging.socket.serializer import (
    PhoenixConnection,
    UnsupportedVersion,
    version_of,
)
from agora.services.messaging.socket.sync import Sync
from agora.services.messaging.socket.typing_indicators import TypingIndicators

log = logging.getLogger("agora.messaging.socket")

Handler = Callable[[Connection, str, dict[str, Any]], Any]

UNSUPPORTED_VSN = CloseReason(4400, "Unsupported vsn")


def given(payload: dict[str, Any], name: str) -> Any:
    """A payload field as the client sent it: `MessagingService` checks its type and
    value as it does for REST, and answers the same errors."""
    return payload.get(name)


def phoenix(conn: Connection) -> PhoenixConnection:
    assert isinstance(conn, PhoenixConnection)  # every messaging socket is one
    return conn


class MessagingSocket(SocketEndpoint):
    refuse_at_handshake = True
    connection_class = PhoenixConnection

    def __init__(
        self,
        *,
        fanout: MessagingFanout,
        rooms: Rooms,
        typing: TypingIndicators,
        room_presence: RoomPresence,
        service_getter: Callable[[], MessagingService],
        max_topics: int,
        max_sync_conversations: int,
        max_presence_users: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fanout = fanout
        self.rooms = rooms
        self.typing = typing
        self.room_presence = room_presence
        self.service_getter = service_getter
        self.max_topics = max_topics
        self.sync = Sync(
            service_getter,
            max_conversations=max_sync_conversations,
            max_contacts=max_presence_users,
            budget=self.max_queued_bytes // 2,
        )
        self._events: dict[str, Handler] = {
            "message:send": self._send,
            "message:edit": self._edit,
            "message:delete": self._delete,
            "read": self._read_up_to,
            "typing:start": self._typing_start,
            "typing:stop": self._typing_stop,
        }
        rooms.on("members", self._on_members)
        self._user_joins = SOCKET_JOINS.labels(self.name, "user")
        self._conversation_joins = SOCKET_JOINS.labels(self.name, "conversation")

    @property
    def service(self) -> MessagingService:
        return self.service_getter()

    def welcome(self, conn: Connection) -> str:
        return push(
            SYSTEM_TOPIC,
            "connected",
            {"user_id": conn.user_id, "login": conn.login, "message": WELCOME},
        )

    def negotiate(self, ws: WebSocket) -> dict[str, Any]:
        try:
            return {"vsn": version_of(query_param(ws, "vsn"))}
        except UnsupportedVersion:
            raise Refused(UNSUPPORTED_VSN, "unsupported_vsn") from None

    async def on_frame(self, conn: Connection, text: str) -> None:
        socket = phoenix(conn)
        try:
            request = socket.parse(text)
        except BadFrame as error:
            socket.answer(bad_frame(error), error.join_ref)
            return
        if request.event == "message:send":  # side by side with the sends before it
            if socket.sends is None:
                socket.sends = SendWindow()
            await socket.sends.start(self._answer(socket, request))
            return
        if socket.sends is not None:  # any other frame comes after them (send_window.py)
            await socket.sends.settle()
        await self._answer(socket, request)

    async def settle(self, conn: Connection) -> None:
        sends = phoenix(conn).sends
        if sends is not None:
            await sends.settle()

    async def _answer(self, socket: PhoenixConnection, request: Request) -> None:
        """Dispatch `request` and answer it, errors included (never raises)."""
        try:
            response = await self._dispatch(socket, request)
        except AgoraError as error:
            socket.answer(failed(request, error), request.join_ref)
        except (PubSubUnavailable, PresenceUnavailable):
            socket.answer(failed(request, ServiceUnavailable("Try again later")), request.join_ref)
        except Exception:  # a bug: this request fails, the socket goes on
            log.exception(
                "%s on %s failed for user %s", request.event, request.topic, socket.user_id
            )
            internal = {"reason": "Internal error", "status": 500}
            socket.answer(reply(request.topic, request.ref, "error", internal), request.join_ref)
        else:
            if response is not None:  # joins send their reply themselves
                socket.answer(ok(request, response), request.join_ref)

    async def _dispatch(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        kind, _, name = request.topic.partition(":")
        if request.topic == SYSTEM_TOPIC:
            if request.event == "heartbeat":
                return {}
            raise BadRequest("Unknown event")
        if kind == "user":
            return await self._user_topic(conn, request, name)
        if kind == "conversation":
            return await self._conversation_topic(conn, request, name)
        raise BadRequest("Unknown topic")

    # --- user:<id> -----------------------------------------------------------------------------

    async def _user_topic(
        self, conn: Connection, request: Request, user_id: str
    ) -> dict[str, Any] | None:
        if user_id != conn.user_id:
            await self._refused(conn, request, "not_own_user_topic")
            raise Forbidden("Not your topic")
        if request.event == "phx_join":
            await self._join_user(conn, request)
            return None
        if request.event == "phx_leave":
            self.fanout.leave(conn)
            await self.presence.unwatch(conn, tuple(conn.watching))
            phoenix(conn).join_refs.pop(request.topic, None)
            return {}
        raise BadRequest("Unknown event")

    async def _join_user(self, conn: Connection, request: Request) -> None:
        actor = Actor(conn.user_id, conn.ip)
        cursors = self.sync.cursors(request.payload)
        stream = self.sync.wants_stream(request.payload)
        self.fanout.join(conn, hold=True)  # pushes from now on wait behind the catch-up
        try:
            answer = await self.sync.user_catch_up(actor, cursors, stream=stream)
            online = await self.presence.watch(conn, await self.sync.contacts(actor))
        except BaseException:
            self.fanout.leave(conn)
            raise
        socket = phoenix(conn)
        socket.join_refs[request.topic] = request.join_ref  # its pushes carry it from now on
        socket.answer(ok(request, answer.reply), request.join_ref)
        conn.send(presence_state(request.topic, online))
        try:
            await self.sync.stream(conn, request.topic, answer)
        finally:
            self.fanout.release(conn)
        self._user_joins.inc()

    # --- conversation:<id> -------------------------------------------------------------------

    async def _conversation_topic(
        self, conn: Connection, request: Request, conversation_id: str
    ) -> dict[str, Any] | None:
        conversation_id = validation.conversation_id(conversation_id)
        if request.event == "phx_join":
            await self._join_conversation(conn, request, conversation_id)
            return None
        if request.event == "phx_leave":
            await self._leave_conversation(conn, request.topic)
            return {}
        handler = self._events.get(request.event)
        if handler is None:
            raise BadRequest("Unknown event")
        if not self.rooms.is_member(request.topic, conn):
            raise BadRequest("Join the topic first")
        result: dict[str, Any] = await handler(conn, conversation_id, request.payload)
        return result

    async def _join_conversation(
        self, conn: Connection, request: Request, conversation_id: str
    ) -> None:
        actor = Actor(conn.user_id, conn.ip)
        cursor = self.sync.cursor(request.payload)
        stream = self.sync.wants_stream(request.payload)
        try:
            summary = await self.service.get_conversation(actor, conversation_id)
        except NotFound:
            await self._refused(conn, request, "not_a_member")
            raise
        topic = request.topic
        if (
            not self.rooms.is_member(topic, conn)
            and len(self.rooms.topics_of(conn)) >= self.max_topics
        ):
            raise BadRequest(f"At most {self.max_topics} conversation topics per socket")
        joined = await self.rooms.join(topic, conn, hold=True)
        try:
            online = await self.room_presence.join(topic, conn, summary.conversation.members)
            answer = await self.sync.conversation_catch_up(actor, summary, cursor, stream=stream)
        except BaseException:
            if joined:
                await self._leave_conversation(conn, topic)
            raise
        socket = phoenix(conn)
        socket.join_refs[topic] = request.join_ref  # its pushes carry it from now on
        socket.answer(ok(request, answer.reply), request.join_ref)
        conn.send(presence_state(topic, online))
        try:
            await self.sync.stream(conn, topic, answer)
        finally:
            self.rooms.release(topic, conn)
        self._conversation_joins.inc()

    async def _leave_conversation(self, conn: Connection, topic: str) -> None:
        if not self.rooms.is_member(topic, conn):
            return
        await self.typing.gone(conn, frozenset((topic,)))
        try:
            await self.room_presence.leave(topic, conn)
        finally:
            await self.rooms.leave(topic, conn)
            self.room_presence.forget(topic)
            phoenix(conn).join_refs.pop(topic, None)

    async def _send(
        self, conn: Connection, conversation_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        result = await self.service.send(
            Actor(conn.user_id, conn.ip),
            conversation_id,
            given(payload, "client_id"),
            text=given(payload, "text"),
            media_id=given(payload, "media_id"),
        )
        return {"message": result.message.to_json(), "created": result.created}

    async def _edit(
        self, conn: Connection, conversation_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        message = await self.service.edit(
            Actor(conn.user_id, conn.ip),
            conversation_id,
            given(payload, "message_id"),
            given(payload, "text"),
        )
        return {"message": message.to_json()}

    async def _delete(
        self, conn: Connection, conversation_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        message = await self.service.delete(
            Actor(conn.user_id, conn.ip),
            conversation_id,
            given(payload, "message_id"),
        )
        return {"message": message.to_json()}

    async def _read_up_to(
        self, conn: Connection, conversation_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        if "seq" not in payload:
            raise Invalid("seq", "seq is required")
        receipt = await self.service.mark_read(
            Actor(conn.user_id, conn.ip), conversation_id, payload["seq"]
        )
        return receipt.to_json()

    async def _typing_start(
        self, conn: Connection, conversation_id: str, _payload: dict[str, Any]
    ) -> dict[str, Any]:
        await self.typing.started(f"conversation:{conversation_id}", conn)
        return {}

    async def _typing_stop(
        self, conn: Connection, conversation_id: str, _payload: dict[str, Any]
    ) -> dict[str, Any]:
        await self.typing.stopped(f"conversation:{conversation_id}", conn)
        return {}

    # --- membership changes, closes ----------------------------------------------------------

    def _on_members(self, topic: str, event: dict[str, Any]) -> None:
        """A conversation's members changed: sockets of removed users leave its topic."""
        members = event.get("members")
        if not isinstance(members, list):
            return
        for conn in self.rooms.local(topic):
            if conn.user_id not in members:
                self.sync.spawn(self._removed(conn, topic))

    async def _removed(self, conn: Connection, topic: str) -> None:
        join_ref = phoenix(conn).join_refs.get(topic)
        await self._leave_conversation(conn, topic)
        # Sent as the join's own: phoenix.js drops a frame naming another join.
        phoenix(conn).answer(push(topic, "phx_close", {"reason": "removed"}), join_ref)

    async def on_close(self, conn: Connection) -> None:
        # Stop its typing, take it out of its topics' presence and rooms, and its pushes.
        sends = phoenix(conn).sends
        if sends is not None:  # left running only when the socket's task was cancelled
            sends.cancel()
        self.fanout.leave(conn)
        for topic in sorted(self.rooms.topics_of(conn)):
            try:
                await self._leave_conversation(conn, topic)
            except Exception:  # its presence entry expires by itself within the TTL
                log.warning("leaving %s failed for user %s", topic, conn.user_id, exc_info=True)

    async def _refused(self, conn: Connection, request: Request, reason: str) -> None:
        await self.audit.record(
            "messaging.join_refused" if request.event == "phx_join" else "messaging.topic_refused",
            reason=reason,
            topic=request.topic,
            action=request.event,
            user_id=conn.user_id,
            ip=conn.ip,
        )
