"""The publications app opened on a test's database, as the publications service tests
drive it (`Stack`), and a cache that is down (`UnreachableCache`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from agora.adapters.audit_database import AuditEvent
from agora.db.engine import Database, utcnow
from agora.ports.backends import Backends
from agora.ports.bus import Delivery
from agora.ports.cache import CacheUnavailable
from agora.services.publications.deps import PublicationsServices
from agora.services.publications.models import PubUser
from agora.services.publications.repository import UserStatus, UserStatusRepository
from agora.services.publications.status.service import UserStatusService
from agora.web.service_app import ServiceApp


class UnreachableCache:
    """A cache whose every call fails the way the Redis adapter does when Redis is down."""

    async def _fail(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CacheUnavailable("Redis unavailable: ConnectionError")

    get = get_and_touch = get_many = get_many_and_touch = set = set_many = set_if_absent = _fail
    delete = expire = ttl = incr = _fail

    async def close(self) -> None:
        return None


@dataclass
class Stack:
    app: ServiceApp
    backends: Backends
    client: httpx.AsyncClient

    @property
    def status(self) -> UserStatusService:
        service: UserStatusService = self.app.provided(PublicationsServices).user_status
        return service

    @property
    def db(self) -> Database:
        return self.backends.database

    def token(self, user_id: str) -> str:
        return str(self.app.context.tokens.issue_access(user_id, f"login-{user_id}").token)

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    async def deliver(self, body: dict[str, Any], message_id: str | None = None) -> None:
        delivery = Delivery(orjson.dumps(body), f"user.{body.get('event')}", message_id)
        await self.app.provided(PublicationsServices).user_events.handle(delivery)

    async def connect(self, user_id: str, **extra: Any) -> None:
        await self.deliver(
            {
                "event": "connected",
                "user_id": user_id,
                "name": "John Doe",
                "email": "john@example.com",
                **extra,
            }
        )

    async def row(self, user_id: str) -> UserStatus | None:
        async with self.db.sessions() as session:
            return await UserStatusRepository(session).get(user_id)

    async def cached(self, user_id: str) -> dict[str, Any] | None:
        raw = await self.backends.cache.get(f"user:{user_id}")
        return None if raw is None else orjson.loads(raw)

    async def set_activity(self, user_id: str, seconds_ago: float) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(PubUser)
                .where(PubUser.user_id == user_id)
                .values(last_activity_at=utcnow() - timedelta(seconds=seconds_ago))
            )

    async def audits(self, user_id: str) -> list[str]:
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.user_id == user_id)
                .order_by(AuditEvent.id)
            )
            return list(rows.scalars())


OpenStack = Callable[..., Awaitable[Stack]]


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"
