"""Sending a message: the hot write path of messaging (issue 13).

A send is checked (membership, an earlier send of this client id), counted, cleaned,
stored, pushed to every device of every member, and notified to the members with no
device online. On PostgreSQL that is two statements, each shared with the sends of the
same author and conversation that queued while the previous one ran (batches.py): the
checks of a burst in one read, its stores in one write and one commit (group commit).
Sends of one author to one conversation are stored and pushed in the order they were
called, the checks before running side by side (send_order.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import logging
import uuid

from sqlalchemy.exc import IntegrityError

from agora.core.errors import Invalid, NotFound, ServiceUnavailable
from agora.core.metrics import MESSAGES_STORED
from agora.db.engine import utcnow
from agora.services.messaging import validation
from agora.services.messaging.content import readable
from agora.services.messaging.domain import Actor, Message, SendResult
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.repository_send import SendRepository, StoreOutcome, StoreResult
from agora.services.messaging.service.batches import Batches, Key
from agora.services.messaging.service.media import MediaUploads
from agora.services.messaging.service.send_order import Turn

log = logging.getLogger("agora.messaging")

PREVIEW_CHARS = 100
STORE_ATTEMPTS = 5
CHECK_BATCH = 16  # client ids per check at most: a join each (repository_send.check_pg)


@dataclasses.dataclass(frozen=True, slots=True)
class Pushed:
    """A draft as stored (its seq and version), and the members it was pushed to."""

    message: Message
    member_ids: list[str]


class MessageSending(MediaUploads):
    async def send(
        self,
        actor: Actor,
        conversation_id: str,
        client_id: str,
        text: str | None = None,
        media_id: str | None = None,
    ) -> SendResult:
        """The stored message, created or (a retry of its client id) found; the member
        list comes from `member_lists`, the presence lookup for offline notifications
        runs beside the store."""
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
            try:
                pushed = await stored
            except IntegrityError:
                # The same client id, stored by a concurrent send since our check (or
                # twice in a burst): that message is the answer (the failed store took
                # no seq).
                raced = await self._stored(actor, conversation_id, client_id)
                if raced is None:
                    raise
                return SendResult(raced, created=False)
            online = await early if early is not None and pushed.member_ids is guessed else None
            await self._notify_offline(pushed.member_ids, pushed.message, online)  # logs
            return SendResult(pushed.message, created=True)
        finally:
            if early is not None:
                early.cancel()  # not used (the store failed, or the members changed)

    async def _check_send(
        self, actor: Actor, conversation_id: str, client_id: object
    ) -> Message | None:
        """NotFound unless the actor is a member (before anything about the request is
        judged, so ids cannot be probed); else their earlier message of this client id."""
        if not isinstance(client_id, str) or not validation.is_client_id(client_id):
            await self._require_member(actor, conversation_id)  # then the 422
            return None
        member, earlier_id = await self.check_batches.submit(
            (actor.user_id, conversation_id), client_id
        )
        if not member:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        if earlier_id is None:
            return None
        return await self._stored(actor, conversation_id, client_id)  # a resend: rare

    @functools.cached_property
    def check_batches(self) -> Batches[str, tuple[bool, str | None]]:
        """Per (author, conversation): the client ids to check, in one statement."""
        return Batches(self._check_batch, max_batch=CHECK_BATCH)

    @functools.cached_property
    def store_batches(self) -> Batches[Message, Pushed]:
        """Per (author, conversation): the drafts to store, in one statement and commit."""
        return Batches(self._store_and_push)

    async def _check_batch(self, key: Key, client_ids: list[str]) -> list[tuple[bool, str | None]]:
        """(is the author a member, the id of their earlier message of that client id)
        for each client id."""
        author_id, conversation_id = key
        member, earlier = await SendRepository(self.db).check_sends(
            conversation_id, author_id, client_ids
        )
        if not member:
            return [(False, None)] * len(client_ids)
        return [(True, earlier_id) for earlier_id in earlier]

    async def _store_and_push(self, key: Key, drafts: list[Message]) -> list[Pushed | Exception]:
        """Store a batch (`_store_batch`), then queue the push of its new messages, in
        seq order, before the next batch of this author and conversation is stored (a
        key's batches run one after the other): pushes follow the seqs, and a batch's
        pushes leave together, in one pub/sub call, and reach each device in one write
        (socket/fanout.py). Queuing a push does not raise (`_announce` logs); a member
        list that cannot be read fails the batch's sends, stored (a retry of their client
        ids finds them)."""
        out: list[Pushed | Exception] = []
        for draft, result in zip(drafts, await self._store_batch(drafts), strict=True):
            if isinstance(result, Exception):
                out.append(result)
            elif result.outcome is StoreOutcome.NOT_MEMBER:  # removed since the check
                out.append(NotFound(validation.CONVERSATION_NOT_FOUND))
            else:
                MESSAGES_STORED.inc()
                members = await self._members(draft.conversation_id, result.members_version)
                message = dataclasses.replace(draft, seq=result.seq, version=result.version)
                await self._announce(members, "message:new", message.to_json())
                out.append(Pushed(message, members))
        return out

    async def _store_batch(self, drafts: list[Message]) -> list[StoreResult | Exception]:
        """One author's drafts to one conversation, in one transaction; run again when a
        membership change committed while it waited (a few times at most: each retry
        sees that change). A client id that raced another send of it fails the batch
        whole: then each is stored alone, so that only it fails."""
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

    # --- offline notifications ---------------------------------------------------------

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
