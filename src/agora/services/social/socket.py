"""The social socket's frames (docs/social.md): chat, echo, presence.

Everything protocol-agnostic (tickets, limits, queues, fan-out, presence bookkeeping)
is in `agora.realtime`; this module only says what each frame means.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from agora.core.text import refusal, safe_text
from agora.ports.contacts import NOBODY, Contacts
from agora.ports.pubsub import PubSubUnavailable
from agora.realtime.connection import Connection, error_frame
from agora.realtime.endpoint import SocketEndpoint

WELCOME = "Welcome to Social WebSocket!"
MAX_ID_CHARS = 64  # user ids, client ids and timestamps echoed back


class FrameError(Exception):
    """The client's frame is refused; the message goes back in an error frame."""


NOT_DELIVERED = "Not delivered, try again"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def user_id_of(value: object) -> str | None:
    """A user id as clients send it: a string or an integer (the seed's `userId: 123`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
        return value
    return None


def short_text(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_ID_CHARS else None


class SocialSocket(SocketEndpoint):
    def __init__(
        self,
        *,
        max_content_chars: int,
        max_presence_users: int,
        contacts: Contacts = NOBODY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.contacts = contacts
        self.max_content_chars = max_content_chars
        self.max_presence_users = max_presence_users
        self._handlers = {
            "chat": self._chat,
            "presence.query": self._presence_query,
            "presence.watch": self._presence_watch,
            "presence.unwatch": self._presence_unwatch,
        }

    def welcome(self, conn: Connection) -> str:
        return dumps(
            {"type": "connected", "userId": conn.user_id, "login": conn.login, "message": WELCOME}
        )

    async def on_frame(self, conn: Connection, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.send(error_frame("Invalid JSON"))
            return
        if not isinstance(frame, dict):
            conn.send(error_frame("A frame is a JSON object"))
            return
        handler = self._handlers.get(frame.get("type"))  # type: ignore[arg-type]
        if handler is None:
            conn.send(error_frame("Unknown frame type"))
            return
        try:
            await handler(conn, frame)
        except FrameError as error:
            conn.send(error_frame(str(error)))

    # --- chat --------------------------------------------------------------------------

    async def _chat(self, conn: Connection, frame: dict[str, Any]) -> None:
        content = frame.get("content")
        if content is None:
            raise FrameError("Missing content")
        if not isinstance(content, str):
            raise FrameError("Content must be a string")
        if len(content) > self.max_content_chars:
            raise FrameError("Content too long")
        # The one user-text policy (core/text.py), as for messages: controls and bidi
        # overrides refused, markup dropped, the rest HTML-escaped.
        reason = refusal(content, multiline=True)
        if reason is not None:
            raise FrameError(reason)
        content = safe_text("content", content, multiline=True)
        if not content:
            raise FrameError("Content is empty once markup is removed")
        if "to" not in frame:
            echo: dict[str, Any] = {"type": "echo", "content": content, "receivedAt": now_iso()}
            timestamp = short_text(frame.get("timestamp"))
            if timestamp is not None:
                echo["timestamp"] = timestamp
            conn.send(dumps(echo))
            return
        recipient = user_id_of(frame["to"])
        if recipient is None:
            raise FrameError("Invalid recipient")
        # Only to someone the sender shares a conversation with; an unknown user and a
        # stranger get the same answer, and neither an ack (AGORA_SOCIAL_CHAT_REACH).
        if recipient not in await self.contacts.among(conn.user_id, [recipient]):
            raise FrameError("Unknown recipient")
        message_id = uuid.uuid4().hex
        sent_at = now_iso()
        client_id = short_text(frame.get("id"))
        try:
            await self.hub.deliver(
                recipient,
                dumps(
                    {
                        "type": "chat",
                        "from": conn.user_id,
                        "fromLogin": conn.login,
                        "content": content,
                        "id": message_id,
                        "sentAt": sent_at,
                    }
                ),
            )
        except PubSubUnavailable:
            # Not on the bus, or not to a device of the recipient on this instance: no ack
            # (an ack means delivered to the bus), an error the client may retry on.
            refused: dict[str, Any] = {"type": "error", "message": NOT_DELIVERED, "retry": True}
            if client_id is not None:
                refused["clientId"] = client_id
            conn.send(dumps(refused))
            return
        ack: dict[str, Any] = {"type": "ack", "id": message_id, "to": recipient, "sentAt": sent_at}
        if client_id is not None:
            ack["clientId"] = client_id
        conn.send(dumps(ack))

    # --- presence ----------------------------------------------------------------------

    def _users(self, frame: dict[str, Any]) -> list[str]:
        users = frame.get("users")
        if not isinstance(users, list):
            raise FrameError("users must be a list of user ids")
        if len(users) > self.max_presence_users:
            raise FrameError(f"At most {self.max_presence_users} users per frame")
        ids = [user_id_of(user) for user in users]
        if any(user is None for user in ids):
            raise FrameError("users must be a list of user ids")
        return list(dict.fromkeys(user for user in ids if user is not None))

    async def _contacts(self, conn: Connection, frame: dict[str, Any]) -> list[str]:
        """The frame's users the caller may know about (AGORA_SOCIAL_CHAT_REACH): about
        anyone else presence answers nothing, as for a user who is offline."""
        users = self._users(frame)
        allowed = await self.contacts.among(conn.user_id, users)
        return [user for user in users if user in allowed or user == conn.user_id]

    async def _presence_query(self, conn: Connection, frame: dict[str, Any]) -> None:
        users = await self._contacts(conn, frame)
        online = await self.presence.online(users)
        conn.send(dumps({"type": "presence", "online": [u for u in users if u in online]}))

    async def _presence_watch(self, conn: Connection, frame: dict[str, Any]) -> None:
        users = await self._contacts(conn, frame)
        if len(conn.watching | set(users)) > self.max_presence_users:
            raise FrameError(f"At most {self.max_presence_users} watched users")
        online = await self.presence.watch(conn, users)
        conn.send(dumps({"type": "presence", "online": [u for u in users if u in online]}))

    async def _presence_unwatch(self, conn: Connection, frame: dict[str, Any]) -> None:
        await self.presence.unwatch(conn, self._users(frame))
