"""What a joining device is told: catch-ups, unread counts, whose presence it follows.

A device that reconnects sends, per conversation, the last `seq` it has (and the last
`version`, to also get edits and deletions of older messages):

- on `conversation:<id>`: `{"last_seq": 41, "last_version": 57}` (both optional);
- on `user:<own id>`: `{"conversations": {"<id>": {"last_seq": 41, "last_version": 57}}}`.

It gets `MessagingService.catch_up` for each: exactly what it missed, in version order,
with `recovered: true`, or `recovered: false` and a hint to page over REST when the gap
is over `messaging_sync_max_messages` or the catch-ups would not fit in the socket's
outbound queue (`budget` bytes for one reply: a reply larger than the queue would close
the socket as a slow consumer).
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
from agora.services.messaging import validation
from agora.services.messaging.domain import Actor, Catchup, ConversationSummary
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket.protocol import error_body

log = logging.getLogger("agora.messaging.sync")

Cursor = tuple[int | None, int | None]  # (last_seq, last_version)
CONTACT_PAGES = 20  # pages of 100 conversations read to find whose presence to follow
_RECOVERED = {True: CATCH_UP_REPLIES.labels("true"), False: CATCH_UP_REPLIES.labels("false")}


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
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the client sent ---------------------------------------------------------------

    @staticmethod
    def cursor(payload: dict[str, Any], field: str = "") -> Cursor:
        last_seq = validation.seq(f"{field}last_seq", payload.get("last_seq"))
        last_version = validation.seq(f"{field}last_version", payload.get("last_version"))
        if last_seq is None and last_version is not None:
            raise Invalid(f"{field}last_seq", "last_seq is required with last_version")
        return last_seq, last_version

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
        self, actor: Actor, summary: ConversationSummary, cursor: Cursor
    ) -> Catchup:
        last_seq, last_version = cursor
        conversation = summary.conversation
        if last_seq is None:  # nothing to catch up on: where the conversation stands
            return Catchup(
                conversation_id=conversation.id,
                recovered=True,
                last_seq=conversation.last_seq,
                last_version=conversation.last_version,
                read_seq=summary.read_seq,
                unread=summary.unread,
            )
        service = self.service_getter()
        catchup = await service.catch_up(actor, conversation.id, last_seq, last_version)
        catchup = self._fit(catchup, self.budget)[0]
        _RECOVERED[catchup.recovered].inc()
        return catchup

    async def user_catch_up(self, actor: Actor, cursors: dict[str, Cursor]) -> dict[str, Any]:
        """The `user:<id>` join reply: catch-ups (or errors) per conversation, unread counts."""
        service = self.service_getter()
        catchups: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        left = self.budget
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
            catchup, size = self._fit(catchup, left)
            _RECOVERED[catchup.recovered].inc()
            left -= size
            catchups[conversation_id] = catchup.to_json()
        response: dict[str, Any] = {
            "conversations": catchups,
            "unread": await service.unread_counts(actor),
        }
        if errors:
            response["errors"] = errors
        return response

    @staticmethod
    def _fit(catchup: Catchup, budget: int) -> tuple[Catchup, int]:
        """The catch-up if its JSON fits in `budget` bytes, else `recovered: false`."""
        size = len(orjson.dumps(catchup.to_json()))
        if size <= budget or not catchup.messages:
            return catchup, size
        cut = dataclasses.replace(catchup, recovered=False, messages=[])
        return cut, len(orjson.dumps(cut.to_json()))

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
