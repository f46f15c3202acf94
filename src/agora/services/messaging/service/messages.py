"""MessagingService: every rule of messaging, for REST, the socket and gRPC alike.

Membership is checked on every call: a conversation the actor is not a member of does
not exist for them (`NotFound`, never `Forbidden`, so ids cannot be probed). Changes
are committed first and announced after (`MessagingEvents`, to every device of every
member, and `Notifier` for members with none online): what is stored is the truth, an
announcement that fails is logged and a device catches up on reconnect.

Conversation management is in `conversations.py`, uploads in `media.py`, sending in
`sending.py`; this class puts them together with edits, deletes, pages of messages and
read cursors.
"""

from __future__ import annotations

from agora.core.errors import Conflict, Invalid, NotFound
from agora.db.engine import utcnow
from agora.services.messaging import validation
from agora.services.messaging.domain import (
    Actor,
    Catchup,
    Message,
    MessagePage,
    Receipt,
)
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.service.conversations import ConversationRules
from agora.services.messaging.service.sending import MessageSending


class _Unchanged(Exception):
    """Inside a delete's transaction: already a tombstone (roll back the version)."""

    def __init__(self, message: Message) -> None:
        self.message = message


class MessagingService(MessageSending, ConversationRules):
    """Constructed with its ports (see `core.ServiceCore.__init__`)."""

    # --- messages -------------------------------------------------------------------

    async def list_messages(
        self,
        actor: Actor,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> MessagePage:
        before = validation.seq("before", before)
        after = validation.seq("after", after)
        limit = validation.limit(limit)
        if before is not None and after is not None:
            raise Invalid("before", "Give before or after, not both")
        conversation_id = await self._require_member(actor, conversation_id)
        async with self.db.single_read() as connection:
            found, more = await MessagingRepository(connection).page(
                conversation_id, before=before, after=after, limit=limit
            )
        return MessagePage(found, has_more=more)

    async def edit(self, actor: Actor, conversation_id: str, message_id: str, text: str) -> Message:
        conversation_id = await self._require_member(actor, conversation_id)
        message_id = await self._require_author(actor, conversation_id, message_id, "edit")
        await self.limits.check_message(actor)  # an edit is pushed to every device too
        clean = await self._message_text(actor, conversation_id, text)
        async with self.db.transaction() as session:
            repository = MessagingRepository(session)
            version = await self._next_version(repository, actor, conversation_id)
            current = await repository.message(conversation_id, message_id)
            assert current is not None  # messages are never removed, only tombstoned
            if current.deleted:
                raise Conflict("Message deleted")
            if current.kind != "text":
                raise Invalid("text", "Only text messages can be edited")
            changes = {"text": clean, "edited_at": utcnow(), "version": version}
            await repository.change_message(message_id, changes)
            message = await repository.message(conversation_id, message_id)
            member_ids = (await repository.members_of([conversation_id]))[conversation_id]
        assert message is not None
        await self._announce(member_ids, "message:updated", message.to_json())
        return message

    async def delete(self, actor: Actor, conversation_id: str, message_id: str) -> Message:
        """Leaves a tombstone (no text, no media, `deleted_at`); deleting it again
        answers the tombstone and changes nothing."""
        conversation_id = await self._require_member(actor, conversation_id)
        message_id = await self._require_author(actor, conversation_id, message_id, "delete")
        try:
            async with self.db.transaction() as session:
                repository = MessagingRepository(session)
                version = await self._next_version(repository, actor, conversation_id)
                current = await repository.message(conversation_id, message_id)
                assert current is not None
                if current.deleted:
                    raise _Unchanged(current)  # rolls the version back
                changes = {
                    "text": None,
                    "media_id": None,
                    "deleted_at": utcnow(),
                    "version": version,
                }
                await repository.change_message(message_id, changes)
                message = await repository.message(conversation_id, message_id)
                member_ids = (await repository.members_of([conversation_id]))[conversation_id]
        except _Unchanged as unchanged:
            return unchanged.message
        assert message is not None
        await self._announce(member_ids, "message:deleted", message.to_json())
        return message

    async def _require_author(
        self, actor: Actor, conversation_id: str, message_id: str, action: str
    ) -> str:
        """The message id, checked: 404 if not in the conversation, 403 (audited) if the
        actor did not write it. Outside any transaction: the audit row is written
        while no lock is held (SQLite has one writer)."""
        message_id = validation.message_id(message_id)
        async with self.db.single_read() as connection:
            message = await MessagingRepository(connection).message(conversation_id, message_id)
        if message is None:
            raise NotFound(validation.MESSAGE_NOT_FOUND)
        if message.author_id != actor.user_id:
            await self._refuse(
                actor,
                action,
                "Only the author can change a message",
                conversation_id=conversation_id,
                message_id=message_id,
            )
        return message_id

    async def _next_version(
        self, repository: MessagingRepository, actor: Actor, conversation_id: str
    ) -> int:
        """Lock the conversation and take its next version (see repository.advance)."""
        counters = await repository.advance(conversation_id, new_message=False, now=utcnow())
        # Re-checked under the lock: the actor may have been removed meanwhile.
        if counters is None or await repository.read_seq(conversation_id, actor.user_id) is None:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        return counters[1]

    # --- read cursors and sync -------------------------------------------------------

    async def mark_read(self, actor: Actor, conversation_id: str, seq: int) -> Receipt:
        wanted = validation.seq("seq", seq)
        assert wanted is not None
        conversation_id = validation.conversation_id(conversation_id)
        async with self.db.transaction() as session:
            repository = MessagingRepository(session)
            conversation = await repository.conversation(conversation_id)
            if conversation is None or actor.user_id not in conversation.members:
                raise NotFound(validation.CONVERSATION_NOT_FOUND)
            target = min(wanted, conversation.last_seq)
            moved = await repository.move_read_cursor(conversation_id, actor.user_id, target)
            read_seq = await repository.read_seq(conversation_id, actor.user_id)
            assert read_seq is not None
            unread = await repository.unread_count(conversation_id, actor.user_id, read_seq)
        receipt = Receipt(conversation_id, actor.user_id, read_seq, unread)
        if moved:
            await self._announce(conversation.members, "receipt", receipt.to_json())
        return receipt

    async def unread_counts(self, actor: Actor) -> dict[str, int]:
        """Unread messages of every conversation of the actor (zeros included)."""
        async with self.db.single_read() as connection:
            return await MessagingRepository(connection).unread_counts(actor.user_id)

    async def unread_count(self, actor: Actor, conversation_id: str) -> int:
        conversation_id = validation.conversation_id(conversation_id)
        async with self.db.sessions() as session:
            repository = MessagingRepository(session)
            read_seq = await repository.read_seq(conversation_id, actor.user_id)
            if read_seq is None:
                raise NotFound(validation.CONVERSATION_NOT_FOUND)
            return await repository.unread_count(conversation_id, actor.user_id, read_seq)

    async def catch_up(
        self, actor: Actor, conversation_id: str, last_seq: int, last_version: int | None
    ) -> Catchup:
        """What a device that has everything up to `last_seq` (and every change up to
        `last_version`, when given) missed: ascending version, or `recovered=False`
        (and no messages) past messaging_sync_max_messages.

        The counters are read before the messages: a message committed in between may
        come with them (a device applies messages by id, so seeing it twice is
        harmless), but never is one counted as known without being sent."""
        known_seq = validation.seq("last_seq", last_seq)
        assert known_seq is not None
        known_version = validation.seq("last_version", last_version)
        conversation_id = validation.conversation_id(conversation_id)
        cap = self.settings.messaging_sync_max_messages
        async with self.db.sessions() as session:
            repository = MessagingRepository(session)
            summaries = await repository.summaries(actor.user_id, conversation_id=conversation_id)
            if not summaries:
                raise NotFound(validation.CONVERSATION_NOT_FOUND)
            missed = await repository.changes(conversation_id, known_seq, known_version, cap + 1)
        summary = summaries[0].summary
        recovered = len(missed) <= cap
        return Catchup(
            conversation_id=conversation_id,
            recovered=recovered,
            messages=missed if recovered else [],
            last_seq=summary.conversation.last_seq,
            last_version=summary.conversation.last_version,
            read_seq=summary.read_seq,
            unread=summary.unread,
        )
