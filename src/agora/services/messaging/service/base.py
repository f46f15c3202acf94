"""What every part of `MessagingService` shares: its ports, membership, announcements,
a message's text.

`MessagingService` (messages.py) is this plus conversations (conversations.py), uploads
(media.py), sending (sending.py) and the rest of messages (messages.py itself: edits,
deletes, pages, read cursors): one object for callers, one file per concern for readers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NoReturn

from agora.core.audit import Audit
from agora.core.errors import Forbidden, Invalid, NotFound
from agora.core.settings import Settings
from agora.db.engine import Database
from agora.ports.media import MediaStore
from agora.ports.notify import Notifier
from agora.ports.users import UserDirectory
from agora.services.messaging import validation
from agora.services.messaging.content import clean_text, suspicious_patterns
from agora.services.messaging.domain import Actor
from agora.services.messaging.ports import MessagingEvents
from agora.services.messaging.rate_limits import MessagingLimits
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.service.member_lists import MemberLists
from agora.services.messaging.service.send_order import SendOrder

log = logging.getLogger("agora.messaging")


class ServiceCore:
    def __init__(
        self,
        *,
        db: Database,
        users: UserDirectory,
        media: MediaStore,
        events: MessagingEvents,
        notifier: Notifier,
        limits: MessagingLimits,
        audit: Audit,
        settings: Settings,
    ) -> None:
        self.db = db
        self.users = users
        self.media = media
        self.events = events
        self.notifier = notifier
        self.limits = limits
        self.audit = audit
        self.settings = settings
        self.member_lists = MemberLists()
        self.send_order = SendOrder()  # the drafts of one author queue in send order

    async def _require_member(self, actor: Actor, conversation_id: str) -> str:
        """The conversation id, checked; NotFound unless the actor is a member."""
        conversation_id = validation.conversation_id(conversation_id)
        async with self.db.single_read() as connection:
            read_seq = await MessagingRepository(connection).read_seq(
                conversation_id, actor.user_id
            )
        if read_seq is None:
            raise NotFound(validation.CONVERSATION_NOT_FOUND)
        return conversation_id

    async def _announce(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        """Push an event to every device of `user_ids`; a failure is logged, not raised:
        the change is stored, and devices catch up when they reconnect."""
        try:
            await self.events.publish(list(user_ids), event, payload)
        except Exception:
            log.exception("could not publish %s", event)

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

    async def _audit_suspicious(self, actor: Actor, raw: str, **fields: Any) -> None:
        """Audit what looks like an attack in what a user wrote (stored sanitized anyway)."""
        found = suspicious_patterns(raw)
        if found:
            await self.audit.record(
                "messaging.suspicious_content",
                user_id=actor.user_id,
                ip=actor.ip,
                patterns=found,
                **fields,
            )

    async def _refuse(self, actor: Actor, action: str, message: str, **fields: Any) -> NoReturn:
        """Audit a refusal, then raise it (403)."""
        await self.audit.record(
            "messaging.forbidden", action=action, user_id=actor.user_id, ip=actor.ip, **fields
        )
        raise Forbidden(message)
