"""What a joining device is told: catch-ups, unread counts, whose presence it follows.

A device that reconnects sends, per conversation, the last `seq` it has (and the last
`version`, to also get edits and deletions of older messages):

- on `conversation:<id>`: `{"last_seq": 41, "last_version": 57}` (both optional);
- on `user:<own id>`: `{"conversations": {"<id>": {"last_seq": 41, "last_version": 57}}}`.

It gets `MessagingService.catch_up` for each: exactly what it missed, in version order,
with `recovered: true`, or `recovered: false` and a hint to page over REST when the gap
is over `messaging_sync_max_messages`. Without `"stream": true` in the join payload, a
catch-up must also fit in the reply (`budget` bytes: a reply larger than the outbound
queue would close the socket as a slow consumer), or it is `recovered: false` too. With
it, what does not fit in one batch's bytes is streamed after the reply
(`catchup_stream`), however long the messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from agora.core.errors import AgoraError, Invalid, NotFound
from agora.core.metrics import CATCH_UP_REPLIES
from agora.realtime.connection import Connection
from agora.services.messaging import validation
from agora.services.messaging.domain import Actor, Catchup, ConversationSummary
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket import catchup_stream
from agora.services.messaging.socket.catchup_stream import BATCH_BYTES, fits, streamed_reply
from agora.services.messaging.socket.protocol import error_body

log = logging.getLogger("agora.messaging.sync")

Cursor = tuple[int | None, int | None]  # (last_seq, last_version)
CONTACT_PAGES = 20  # pages of 100 conversations read to find whose presence to follow
_RECOVERED = {True: CATCH_UP_REPLIES.labels("true"), False: CATCH_UP_REPLIES.labels("false")}


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A join's reply, and the catch-ups to stream after it (`catchup_stream`)."""

    reply: dict[str, Any]
    streamed: list[Catchup] = dataclasses.field(default_factory=list)


class Sync:
    def __init__(
        self,
        service_getter: Callable[[], MessagingService],
        *,
        max_conversations: int,
        max_contacts: int,
        budget: int,
    ) -> None:
        self.service_getter = service_getter
        self.max_conversations = max_conversations
        self.max_contacts = max_contacts
        self.budget = budget
        # One streamed frame: small beside the queue, so that pushes held meanwhile fit.
        self.batch_bytes = max(1, min(BATCH_BYTES, budget // 2))
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the client sent ---------------------------------------------------------------

    @staticmethod
    def cursor(payload: dict[str, Any], field: str = "") -> Cursor:
        last_seq = validation.seq(f"{field}last_seq", payload.get("last_seq"))
        last_version = validation.seq(f"{field}last_version", payload.get("last_version"))
        if last_seq is None and last_version is not None:
            raise Invalid(f"{field}last_seq", "last_seq is required with last_version")
        return last_seq, last_version

    @staticmethod
    def wants_stream(payload: dict[str, Any]) -> bool:
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise Invalid("stream", "stream is true or false")
        return stream

    def cursors(self, payload: dict[str, Any]) -> dict[str, Cursor]:
        conversations = payload.get("conversations")
        if conversations is None:
            return {}
        if not isinstance(conversations, dict):
            raise Invalid("conversations", "conversations maps conversation ids to cursors")
        if len(conversations) > self.max_conversations:
            raise Invalid("conversations", f"At most {self.max_conversations} conversations")
        cursors: dict[str, Cursor] = {}
        for conversation_id, cursor in conversations.items():
            field = f"conversations.{conversation_id[:40]}."
            if not isinstance(cursor, dict):
                raise Invalid(field.rstrip("."), "Expected {last_seq, last_version}")
            last_seq, last_version = self.cursor(cursor, field)
            if last_seq is None:
                raise Invalid(f"{field}last_seq", "last_seq is required")
            cursors[conversation_id] = (last_seq, last_version)
        return cursors

    # --- what it gets -----------------------------------------------------------------------

    async def conversation_catch_up(
        self, actor: Actor, summary: ConversationSummary, cursor: Cursor, *, stream: bool = False
    ) -> Answer:
        last_seq, last_version = cursor
        conversation = summary.conversation
        if last_seq is None:  # nothing to catch up on: where the conversation stands
            return Answer(
                Catchup(
                    conversation_id=conversation.id,
                    recovered=True,
                    last_seq=conversation.last_seq,
                    last_version=conversation.last_version,
                    read_seq=summary.read_seq,
                    unread=summary.unread,
                ).to_json()
            )
        service = self.service_getter()
        catchup = await service.catch_up(actor, conversation.id, last_seq, last_version)
        answer = Answer({})
        body, _ = self._place(catchup, self.batch_bytes if stream else self.budget, stream, answer)
        return dataclasses.replace(answer, reply=body)

    async def user_catch_up(
        self, actor: Actor, cursors: dict[str, Cursor], *, stream: bool = False
    ) -> Answer:
        """The `user:<id>` join reply: catch-ups (or errors) per conversation, unread counts."""
        service = self.service_getter()
        catchups: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        answer = Answer({})
        left = self.batch_bytes if stream else self.budget
        for conversation_id, (last_seq, last_version) in cursors.items():
            try:
                if not validation.is_entity_id(conversation_id):
                    raise NotFound(validation.CONVERSATION_NOT_FOUND)
                catchup = await service.catch_up(
                    actor, conversation_id, last_seq or 0, last_version
                )
            except AgoraError as error:
                errors[conversation_id] = error_body(error)
                continue
            catchups[conversation_id], size = self._place(catchup, left, stream, answer)
            left -= size
        response: dict[str, Any] = {
            "conversations": catchups,
            "unread": await service.unread_counts(actor),
        }
        if errors:
            response["errors"] = errors
        return dataclasses.replace(answer, reply=response)

    @staticmethod
    def _place(
        catchup: Catchup, budget: int, stream: bool, answer: Answer
    ) -> tuple[dict[str, Any], int]:
        """The reply's entry for `catchup` and its bytes: in full if it fits in `budget`;
        else streamed after the reply (added to `answer`) or, unasked, `recovered: false`."""
        whole = not catchup.messages or fits(catchup, budget)
        body = catchup.to_json() if whole else None
        if body is None:
            if stream:
                answer.streamed.append(catchup)
                body = streamed_reply(catchup)
            else:
                body = dataclasses.replace(catchup, recovered=False, messages=[]).to_json()
        _RECOVERED[body["recovered"]].inc()
        return body, len(orjson.dumps(body))

    async def stream(self, conn: Connection, topic: str, answer: Answer) -> None:
        """The catch-ups `answer` left out of its reply, behind it on `topic`."""
        await catchup_stream.stream(conn, topic, answer.streamed, self.batch_bytes)

    async def contacts(self, actor: Actor) -> list[str]:
        """The other members of the actor's conversations, most recent first, capped."""
        service = self.service_getter()
        found: dict[str, None] = {}
        cursor: str | None = None
        for _ in range(CONTACT_PAGES):
            page, cursor = await service.list_conversations(actor, validation.MAX_PAGE, cursor)
            for summary in page:
                for member in summary.conversation.members:
                    if member != actor.user_id:
                        found.setdefault(member)
                        if len(found) >= self.max_contacts:
                            return list(found)
            if cursor is None:
                break
        return list(found)

    # --- background work ---------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` from a pub/sub handler (which must not wait), keeping a reference."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background socket work failed", exc_info=task.exception())

    async def stop(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
