"""Conversations: direct (one per pair) and groups (an owner who manages the members).

Part of `MessagingService` (service.py, see core.py). Every
change is announced as `conversation:updated` to the members before and after it, so a
removed member's devices learn they are out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from agora.core.errors import Invalid, NotFound, ServiceUnavailable
from agora.core.text import safe_text
from agora.db.engine import utcnow
from agora.ports.users import UserInfo, UsersUnavailable
from agora.services.messaging import validation
from agora.services.messaging.domain import Actor, Conversation, ConversationSummary
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.service.base import ServiceCore

log = logging.getLogger("agora.messaging")


class ConversationRules(ServiceCore):
    async def create_direct(self, actor: Actor, other_user_id: str) -> tuple[Conversation, bool]:
        """The pair's conversation, created (True) or found (False), in either order."""
        other = validation.user_id("user_id", other_user_id)
        if other == actor.user_id:
            raise Invalid("user_id", "A direct conversation needs another user")
        key = "|".join(sorted((actor.user_id, other)))
        existing = await self._direct(key)
        if existing is not None:
            return existing, False
        await self._require_users(actor, [other], "user_id")
        now = utcnow()
        conversation_id = uuid.uuid4().hex
        try:
            async with self.db.transaction() as session:
                repository = MessagingRepository(session)
                await repository.add_conversation(
                    {
                        **_new_conversation(conversation_id, "direct", now),
                        "direct_key": key,
                    }
                )
                await repository.add_members(conversation_id, [actor.user_id, other], now, 0)
        except IntegrityError:  # the other one created it at the same moment
            raced = await self._direct(key)
            if raced is None:
                raise
            return raced, False
        conversation = await self._conversation(conversation_id)
        await self._announce(conversation.members, "conversation:updated", conversation.to_json())
        return conversation, True

    async def create_group(
        self, actor: Actor, title: str, member_ids: Sequence[str]
    ) -> Conversation:
        """A group owned by the actor, who is its first member."""
        clean_title = await self._title(actor, title)
        others = [uid for uid in validation.user_ids("members", member_ids) if uid != actor.user_id]
        self._check_size(1 + len(others), "members")
        await self._require_users(actor, others, "members")
        now = utcnow()
        conversation_id = uuid.uuid4().hex
        async with self.db.transaction() as session:
            repository = MessagingRepository(session)
            await repository.add_conversation(
                {
                    **_new_conversation(conversation_id, "group", now),
                    "title": clean_title,
                    "owner_id": actor.user_id,
                }
            )
            await repository.add_members(conversation_id, [actor.user_id, *others], now, 0)
        conversation = await self._conversation(conversation_id)
        await self._announce(conversation.members, "conversation:updated", conversation.to_json())
        return conversation

    async def rename_group(self, actor: Actor, conversation_id: str, title: str) -> Conversation:
        current = await self._owned_group(actor, conversation_id, "rename", "title")
        clean_title = await self._title(actor, title)
        async with self.db.transaction() as session:
            await MessagingRepository(session).set_title(current.id, clean_title)
        conversation = await self._conversation(current.id)
        await self._announce(conversation.members, "conversation:updated", conversation.to_json())
        return conversation

    async def add_members(
        self, actor: Actor, conversation_id: str, user_ids: Sequence[str]
    ) -> Conversation:
        """New members start with everything so far read (they see the history, it is not
        news to them)."""
        current = await self._owned_group(actor, conversation_id, "add_members", "user_ids")
        wanted = [u for u in validation.user_ids("user_ids", user_ids) if u not in current.members]
        self._check_size(len(current.members) + len(wanted), "user_ids")
        await self._require_users(actor, wanted, "user_ids")
        if wanted:
            try:
                async with self.db.transaction() as session:
                    repository = MessagingRepository(session)
                    last_seq = await repository.members_changed(current.id)
                    assert last_seq is not None  # conversations are never removed
                    await repository.add_members(current.id, wanted, utcnow(), read_seq=last_seq)
            except IntegrityError:  # added by a concurrent call: the same outcome
                log.info("members of %s added concurrently", current.id)
        conversation = await self._conversation(current.id)
        await self._announce(conversation.members, "conversation:updated", conversation.to_json())
        return conversation

    async def remove_member(self, actor: Actor, conversation_id: str, user_id: str) -> Conversation:
        """The owner removes anyone but themselves; any member removes themselves (leaves).
        The owner cannot leave their group (there would be no one to manage it)."""
        current = await self._member_of(actor, conversation_id)
        target = validation.user_id("user_id", user_id)
        if current.kind == "direct":
            raise Invalid("user_id", "Members of a direct conversation cannot change")
        if target == actor.user_id and actor.user_id == current.owner_id:
            raise Invalid("user_id", "The owner cannot leave the group")
        if target != actor.user_id and actor.user_id != current.owner_id:
            await self._refuse_non_owner(actor, current.id, "remove_member")
        async with self.db.transaction() as session:
            repository = MessagingRepository(session)
            await repository.members_changed(current.id)  # first: it takes the lock
            removed = await repository.remove_member(current.id, target)
        if not removed:
            raise NotFound("Member not found")
        conversation = await self._conversation(current.id)
        # The removed member's devices too: they must learn they are out.
        await self._announce(
            [*conversation.members, target], "conversation:updated", conversation.to_json()
        )
        return conversation

    async def list_conversations(
        self, actor: Actor, limit: int, cursor: str | None
    ) -> tuple[list[ConversationSummary], str | None]:
        """Most recent activity first; the cursor continues after the last item."""
        limit = validation.limit(limit)
        below = validation.decode_cursor(cursor) if cursor is not None else None
        async with self.db.sessions() as session:
            listed = await MessagingRepository(session).summaries(
                actor.user_id, limit=limit + 1, below=below
            )
        page = listed[:limit]
        next_cursor = None
        if len(listed) > limit:
            last = page[-1]
            next_cursor = validation.encode_cursor(
                last.last_activity_at, last.summary.conversation.id
            )
        return [item.summary for item in page], next_cursor

    async def get_conversation(self, actor: Actor, conversation_id: str) -> ConversationSummary:
        conversation_id = validation.conversation_id(conversation_id)
        async with self.db.sessions() as session:
            listed = await MessagingRepository(session).summaries(
                actor.user_id, conversation_id=conversation_id
            )
        if not listed:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        return listed[0].summary

    async def describe_members(self, actor: Actor, conversation_id: str) -> list[UserInfo]:
        """The members as auth describes them, in member order (unknown ones left out)."""
        conversation = await self._member_of(actor, conversation_id)
        found = await self._get_users(actor, conversation.members)
        return [found[uid] for uid in conversation.members if uid in found]

    # --- helpers --------------------------------------------------------------------------

    async def _direct(self, key: str) -> Conversation | None:
        async with self.db.sessions() as session:
            repository = MessagingRepository(session)
            conversation_id = await repository.direct_conversation_id(key)
            if conversation_id is None:
                return None
            return await repository.conversation(conversation_id)

    async def _conversation(self, conversation_id: str) -> Conversation:
        async with self.db.sessions() as session:
            conversation = await MessagingRepository(session).conversation(conversation_id)
        if conversation is None:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        return conversation

    async def _member_of(self, actor: Actor, conversation_id: str) -> Conversation:
        conversation = await self._conversation(validation.conversation_id(conversation_id))
        if actor.user_id not in conversation.members:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        return conversation

    async def _owned_group(
        self, actor: Actor, conversation_id: str, action: str, field: str
    ) -> Conversation:
        conversation = await self._member_of(actor, conversation_id)
        if conversation.kind != "group":
            raise Invalid(field, "Only group conversations can do that")
        if conversation.owner_id != actor.user_id:
            await self._refuse_non_owner(actor, conversation.id, action)
        return conversation

    async def _refuse_non_owner(self, actor: Actor, conversation_id: str, action: str) -> None:
        await self._refuse(
            actor,
            action,
            "Only the owner of the group can do that",
            conversation_id=conversation_id,
        )

    async def _title(self, actor: Actor, title: object) -> str:
        if not isinstance(title, str):
            raise Invalid("title", "title must be a string")
        limit = self.settings.messaging_group_max_title_chars
        if len(title.strip()) > limit:
            raise Invalid("title", f"Title longer than {limit} characters")
        clean = safe_text("title", title)  # one line: newlines are refused too
        if not clean:
            raise Invalid("title", "Title is empty")
        await self._audit_suspicious(actor, title, field="title")
        return clean

    def _check_size(self, count: int, field: str) -> None:
        limit = self.settings.messaging_group_max_members
        if count > limit:
            raise Invalid(field, f"A group has at most {limit} members")

    async def _get_users(self, actor: Actor, user_ids: Iterable[str]) -> dict[str, UserInfo]:
        try:
            return await self.users.get_users(list(user_ids), actor.token)
        except UsersUnavailable as exc:
            raise ServiceUnavailable(exc.message) from exc

    async def _require_users(self, actor: Actor, user_ids: Sequence[str], field: str) -> None:
        if not user_ids:
            return
        found = await self._get_users(actor, user_ids)
        unknown = [uid for uid in user_ids if uid not in found]
        if unknown:
            raise Invalid(field, f"Unknown user(s): {', '.join(unknown[:10])}")


def _new_conversation(conversation_id: str, kind: str, now: datetime) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "kind": kind,
        "created_at": now,
        "last_activity_at": now,
        "last_seq": 0,
        "last_version": 0,
    }
