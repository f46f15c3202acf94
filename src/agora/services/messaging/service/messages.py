"""MessagingService: every rule of messaging, for REST, the socket and gRPC alike.

Membership is checked on every call: a conversation the actor is not a member of does
not exist for them (`NotFound`, never `Forbidden`, so ids cannot be probed). Changes
are committed first and announced after (`MessagingEvents`, to every device of every
member, and `Notifier` for members with none online): what is stored is the truth, an
announcement that fails is logged and a device catches up on reconnect.

Conversation management is in `conversations.py`, uploads in `media_uploads.py`; this class
puts them together with messages and read cursors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import logging
import uuid

from sqlalchemy.exc import IntegrityError

from agora.core.errors import Conflict, Invalid, NotFound, ServiceUnavailable
from agora.core.metrics import MESSAGES_STORED
from agora.db.engine import utcnow
from agora.services.messaging import validation
from agora.services.messaging.content import clean_text, readable
from agora.services.messaging.domain import (
    Actor,
    Catchup,
    Message,
    MessagePage,
    Receipt,
    SendResult,
)
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.repository_send import SendRepository, StoreOutcome, StoreResult
from agora.services.messaging.service.batches import Batches
from agora.services.messaging.service.conversations import ConversationRules
from agora.services.messaging.service.media import MediaUploads
from agora.services.messaging.service.send_order import Turn

log = logging.getLogger("agora.messaging")

PREVIEW_CHARS = 100
STORE_ATTEMPTS = 5
CHECK_BATCH = 16  # client ids per check at most: a join each (repository_send.check_many_pg)


class _Unchanged(Exception):
    """Inside a delete's transaction: already a tombstone (roll back the version)."""

    def __init__(self, message: Message) -> None:
        self.message = message


class MessagingService(ConversationRules, MediaUploads):
    """Constructed with its ports (see `core.ServiceCore.__init__`)."""

    # --- messages -------------------------------------------------------------------

    async def send(
        self,
        actor: Actor,
        conversation_id: str,
        client_id: str,
        text: str | None = None,
        media_id: str | None = None,
    ) -> SendResult:
        """Two statements on PostgreSQL: the check (membership, an earlier send of this
        client id) and the store (repository_send.py), each shared with the sends of
        the same author and conversation that queued behind the batch running (the
        store's: group commit; batches.py). The member list comes from `member_lists`,
        the push is queued by the batch once stored (`_store_and_push`), the presence
        lookup for offline notifications runs beside the store. Sends of one author to
        one conversation are stored and pushed in the order they were called, the
        checks before running side by side (send_order.py)."""
        conversation_id = validation.conversation_id(conversation_id)
        turn = self.send_order.turn(actor.user_id, conversation_id)  # no await before it
        try:
            return await self._send_in_turn(actor, conversation_id, client_id, text, media_id, turn)
        finally:
            turn.end()

    async def _send_in_turn(
        self,
        actor: Actor,
        conversation_id: str,
        client_id: object,
        text: str | None,
        media_id: str | None,
        turn: Turn,
    ) -> SendResult:
        earlier = await self._check_send(actor, conversation_id, client_id)
        client_id = validation.client_id(client_id)
        if (text is None) == (media_id is None):
            raise Invalid("text", "Send either text or media_id")
        if earlier is not None:  # a retry: the stored message, nothing counted twice
            return SendResult(earlier, created=False)
        # Counted before the content is looked at: refused attempts count too, and a
        # blocked client cannot make the audit trail grow.
        await self.limits.check_message(actor)
        clean, upload = None, None
        if text is not None:
            clean = await self._message_text(actor, conversation_id, text)
        else:
            upload = await self._own_media(actor, media_id)
        draft = Message(
            id=uuid.uuid4().hex,
            conversation_id=conversation_id,
            seq=0,  # taken by the store
            version=0,
            author_id=actor.user_id,
            client_id=client_id,
            kind="text" if clean is not None else "media",
            text=clean,
            media=upload,
            created_at=utcnow(),
        )
        # Who is online is asked while the message is stored (a Redis round trip beside
        # the database's), for the members cached before; used if the store confirms them.
        guessed = self.member_lists.latest(conversation_id)
        early = None if guessed is None else asyncio.ensure_future(self._online(guessed, actor))
        try:
            async with turn:  # the drafts queue in the order of their sends
                stored = self.store_batches.submit((actor.user_id, conversation_id), draft)
            return await self._stored_and_notified(actor, draft, stored, guessed, early)
        finally:
            if early is not None:
                early.cancel()  # not used (the store failed, or the members changed)

    async def _stored_and_notified(
        self,
        actor: Actor,
        draft: Message,
        stored: asyncio.Future[StoreResult],
        guessed: list[str] | None,
        early: asyncio.Future[set[str]] | None,
    ) -> SendResult:
        """The send's message once its batch is stored (and pushed: `_store_and_push`),
        and the notification of the members with no device online."""
        conversation_id, client_id = draft.conversation_id, draft.client_id
        try:
            result = await stored
        except IntegrityError:
            # The same client id, stored by a concurrent send since our check (or twice
            # in a burst): that message is the answer (the failed store took no seq).
            raced = await self._stored(actor, conversation_id, client_id)
            if raced is None:
                raise
            return SendResult(raced, created=False)
        if result.outcome is StoreOutcome.NOT_MEMBER:  # removed since the check
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        message = dataclasses.replace(draft, seq=result.seq, version=result.version)
        MESSAGES_STORED.inc()
        member_ids = await self._members(conversation_id, result.members_version)
        online = await early if early is not None and member_ids is guessed else None
        await self._notify_offline(member_ids, message, online)  # logs its own failure
        return SendResult(message, created=True)

    async def _check_send(
        self, actor: Actor, conversation_id: str, client_id: object
    ) -> Message | None:
        """NotFound unless the actor is a member (before anything about the request is
        judged, so ids cannot be probed); else their earlier message of this client id."""
        if not isinstance(client_id, str) or not validation.is_client_id(client_id):
            await self._require_member(actor, conversation_id)  # then the 422
            return None
        member, earlier_id = await self.check_batches.submit(
            (actor.user_id, conversation_id), (actor.user_id, conversation_id, client_id)
        )
        if not member:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        if earlier_id is None:
            return None
        return await SendRepository(self.db).earlier_message(conversation_id, earlier_id)

    @functools.cached_property
    def check_batches(self) -> Batches[tuple[str, str, str], tuple[bool, str | None]]:
        """Per (author, conversation): the client ids to check, in one statement."""
        return Batches(self._check_batch, max_batch=CHECK_BATCH)

    @functools.cached_property
    def store_batches(self) -> Batches[Message, StoreResult]:
        """Per (author, conversation): the drafts to store, in one statement and commit."""
        return Batches(self._store_and_push)

    async def _store_and_push(self, drafts: list[Message]) -> list[StoreResult | Exception]:
        """Store a batch (`_store_batch`), then queue the push of its new messages, in
        seq order, before the next batch of this author and conversation is stored (a
        key's batches run one after the other): pushes follow the seqs, and a batch's
        pushes leave together, in one pub/sub call, and reach each device in one write
        (socket/fanout.py). A push that cannot be made is logged, not raised: the
        messages are stored, and devices catch up on their next join."""
        results = await self._store_batch(drafts)
        try:
            for draft, result in zip(drafts, results, strict=True):
                if isinstance(result, StoreResult) and result.outcome is StoreOutcome.STORED_NEW:
                    members = await self._members(draft.conversation_id, result.members_version)
                    message = dataclasses.replace(draft, seq=result.seq, version=result.version)
                    await self._announce(members, "message:new", message.to_json())
        except Exception:  # the member list could not be read (`_announce` never raises)
            log.exception("stored messages not pushed")
        return results

    async def _check_batch(self, asks: list[tuple[str, str, str]]) -> list[tuple[bool, str | None]]:
        """(author, conversation, client id) asks, all of one author and conversation:
        (is the author a member, the earlier message id of that client id) for each."""
        author_id, conversation_id, _ = asks[0]
        member, earlier = await SendRepository(self.db).check_sends(
            conversation_id, author_id, [client_id for _, _, client_id in asks]
        )
        if not member:
            return [(False, None)] * len(asks)
        return [(True, earlier_id) for earlier_id in earlier]

    async def _store_batch(self, drafts: list[Message]) -> list[StoreResult | Exception]:
        """One author's drafts to one conversation, in one transaction (batches.py);
        run again when a membership change committed while it waited (a few times at
        most: each retry sees that change). A client id that raced another send of it
        fails the batch whole: then each is stored alone, so that only it fails."""
        for _ in range(STORE_ATTEMPTS):
            try:
                results = await SendRepository(self.db).store_messages(drafts)
            except IntegrityError as error:
                if len(drafts) == 1:
                    return [error]
                return [one for draft in drafts for one in await self._store_batch([draft])]
            if all(result.outcome is not StoreOutcome.RETRY for result in results):
                return list(results)
        return [ServiceUnavailable("The conversation is changing; try again") for _ in drafts]

    async def _stored(self, actor: Actor, conversation_id: str, client_id: str) -> Message | None:
        async with self.db.single_read() as connection:
            return await MessagingRepository(connection).message_by_client_id(
                conversation_id, actor.user_id, client_id
            )

    async def _members(self, conversation_id: str, members_version: int) -> list[str]:
        """The members a message stored at `members_version` goes to (member_lists.py)."""
        cached = self.member_lists.get(conversation_id, members_version)
        if cached is not None:
            return cached
        loaded = await SendRepository(self.db).members_with_version(conversation_id)
        assert loaded is not None  # conversations are never removed
        version, member_ids = loaded
        self.member_lists.put(conversation_id, version, member_ids)
        return member_ids

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

    async def _message_text(self, actor: Actor, conversation_id: str, text: object) -> str:
        """Safe text of a message (content.py); 422 when empty or too long. Suspicious
        patterns are audited, also when nothing is left once they are removed."""
        if not isinstance(text, str):
            raise Invalid("text", "text must be a string")
        limit = self.settings.messaging_max_message_chars
        if len(text) > limit:  # counted as sent, before markup is dropped
            raise Invalid("text", f"Message longer than {limit} characters")
        clean = clean_text(text)
        await self._audit_suspicious(actor, text, field="text", conversation_id=conversation_id)
        if not clean:
            raise Invalid("text", "Message is empty")
        return clean

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

    # --- announcements ---------------------------------------------------------------

    async def _online(self, member_ids: list[str], author: Actor) -> set[str]:
        """Who of the other members has a live device; nobody when that cannot be told
        (every other member is then notified: a duplicate beats a lost notification)."""
        others = [uid for uid in member_ids if uid != author.user_id]
        if not others:
            return set()
        try:
            return await self.events.online(others)
        except Exception:
            log.exception("could not tell who is online; notifying every other member")
            return set()

    async def _notify_offline(
        self, member_ids: list[str], message: Message, online: set[str] | None = None
    ) -> None:
        """Notify the members with no live device; `online`: asked already."""
        others = [uid for uid in member_ids if uid != message.author_id]
        if not others:
            return
        if online is None:
            online = await self._online(others, Actor(message.author_id))
        offline = [uid for uid in others if uid not in online]
        if not offline:
            return
        preview = "" if message.text is None else readable(message.text)[:PREVIEW_CHARS]
        notification = {
            "type": "message",
            "conversation_id": message.conversation_id,
            "message_id": message.id,
            "seq": message.seq,
            "author_id": message.author_id,
            "kind": message.kind,
            # Safe text like the message itself: escaped again after the cut, so a cut
            # never leaves half an entity.
            "preview": html.escape(preview, quote=False),
        }
        try:
            await self.notifier.notify(offline, notification)
        except Exception:  # the port says never; a broken backend must not fail a send
            log.exception("notifier failed")
