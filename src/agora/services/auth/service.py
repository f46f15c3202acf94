"""Account and session decisions: who may register, log in, log out.

A user is connected while any of their sessions (access tokens handed out by login,
`auth_sessions`) is live: every login publishes `connected`; `disconnected` is
published when the last live session ends, by its logout, a logout-all, or its
expiry (`end_expired_sessions`, which every auth instance runs every
`AGORA_SESSION_SWEEP_INTERVAL` seconds: see `app.py`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from agora.core.audit import Audit
from agora.core.errors import Conflict, Overloaded, Unauthorized
from agora.db.engine import Database, utcnow
from agora.ports.pubsub import PubSub
from agora.realtime.sessions import publish_notice, revoked_notice
from agora.security.passwords import PasswordHasher
from agora.security.revocation import RevocationStore
from agora.security.tokens import Identity, IssuedToken, TokenService
from agora.services.auth.models import User
from agora.services.auth.registration_throttle import RegistrationThrottle
from agora.services.auth.repository import (
    DuplicateUser,
    EventSubject,
    OutboxRepository,
    SessionRepository,
    UserRepository,
)
from agora.services.auth.schemas import RegisterRequest
from agora.services.auth.throttle import LoginThrottle

T = TypeVar("T")

INVALID_CREDENTIALS = "Invalid credentials"
# One answer for a taken login and a taken email (docs/security.md, registration).
TAKEN = "Login or email already taken"
CONNECTED = "user.connected"
DISCONNECTED = "user.disconnected"


def event_body(event: str, user_id: int, subject: EventSubject) -> tuple[str, str]:
    """The event's id and its JSON body, as docs/contracts.md's event contract has it."""
    event_id = str(uuid.uuid4())
    body: dict[str, Any] = {"event": event, "user_id": str(user_id)}
    if event == "connected":
        body |= {"name": subject.name, "email": subject.email}
    body |= {
        "event_id": event_id,
        "occurred_at": utcnow().isoformat().replace("+00:00", "Z"),
        "seq": subject.seq,
    }
    return event_id, orjson.dumps(body).decode()


class AuthService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        tokens: TokenService,
        audit: Audit,
        outbox_written: asyncio.Event | None = None,
        *,
        throttle: LoginThrottle,
        registration_throttle: RegistrationThrottle | None = None,
        revocations: RevocationStore,
        sessions: PubSub | None = None,
        key_prefix: str = "agora:",
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.tokens = tokens
        self.audit = audit
        self.throttle = throttle
        self.registration_throttle = registration_throttle
        self.revocations = revocations
        # Where logouts are announced to the socket instances (agora.realtime.sessions).
        self.sessions = sessions
        self.key_prefix = key_prefix
        # Set after each committed outbox write: wakes the relay instead of its next poll.
        self.outbox_written = outbox_written

    async def register(self, request: RegisterRequest, ip: str | None = None) -> User:
        """A new account. A taken login and a taken email get the same answer (OWASP:
        don't confirm which accounts exist); the audit trail keeps which it was."""
        login_key, email_key = request.login.lower(), request.email.lower()
        if self.registration_throttle is not None:  # before any work (a hash, a lookup)
            await self.registration_throttle.check(ip)
        # Hashed before the transaction: no connection or write lock waits on argon2,
        # and a taken login or email costs the same time as a new account.
        password_hash = await self._hashing(self.hasher.hash(request.password), ip)
        async with self.db.transaction() as session:
            users = UserRepository(session)
            taken = await users.taken_field(login_key, email_key)
            if taken:
                await self._refuse_registration(taken, request, ip)
            user = User(
                login=request.login,
                login_key=login_key,
                email=request.email,
                email_key=email_key,
                name=request.name,
                password_hash=password_hash,
            )
            try:
                await users.add(user)
            except DuplicateUser as exc:
                await self._refuse_registration(exc.field, request, ip)
        await self.audit.record("auth.registered", user_id=str(user.id), login=user.login, ip=ip)
        return user

    async def _refuse_registration(
        self, field: str, request: RegisterRequest, ip: str | None
    ) -> NoReturn:
        await self.audit.record(
            "auth.register_refused", reason=f"{field}_taken", login=request.login, ip=ip
        )
        raise Conflict(TAKEN)

    async def login(self, login: str, password: str, ip: str | None) -> tuple[User, IssuedToken]:
        # Counted before the lookup and the password: a refused attempt learns nothing,
        # costs nothing, and a burst cannot slip in before its failures are counted.
        await self.throttle.check(login, ip)
        async with self.db.sessions() as session:
            user = await UserRepository(session).by_login(login)
        checked = self.hasher.verify(user.password_hash if user else None, password)
        if not await self._hashing(checked, ip):
            await self.audit.record("auth.login_failed", login=login[:64], ip=ip)
            raise Unauthorized(INVALID_CREDENTIALS)
        await self.throttle.succeeded(login, ip)
        assert user is not None
        # Hashing is slow: done before the transaction so no row lock waits on it.
        new_hash = None
        if self.hasher.needs_rehash(user.password_hash):
            new_hash = await self._hashing(self.hasher.hash(password, lane="login"), ip)
        # Issued first, handed out only once its session and event are committed.
        issued = self.tokens.issue_access(str(user.id), user.login)
        async with self.db.transaction() as session:
            users = UserRepository(session)
            if new_hash is not None:
                await users.set_password_hash(user.id, new_hash)
            written = await self._write_event(session, "connected", user.id)
            if written:
                live_until = datetime.fromtimestamp(issued.expires_at + self.tokens.leeway, UTC)
                await SessionRepository(session).add(issued.jti, user.id, live_until)
        if not written:  # deleted between the password check and now
            await self.audit.record("auth.login_failed", login=login[:64], ip=ip)
            raise Unauthorized(INVALID_CREDENTIALS)
        self._wake_relay()
        await self.audit.record(
            "auth.login", user_id=str(user.id), login=user.login, jti=issued.jti, ip=ip
        )
        return user, issued

    async def logout(self, identity: Identity, ip: str | None, everywhere: bool = False) -> None:
        """Revoke the token (or every token of the user) and end its session; announce
        the disconnect if no other session of the user is live.

        Revocation commits first: if the event write failed after it, the user would be
        logged out without the event, never the reverse.
        """
        if everywhere:
            await self.revocations.revoke_all(identity.user_id)
        else:
            await self.revocations.revoke(identity)
        written = False
        if identity.user_id.isdigit():
            user_id = int(identity.user_id)
            async with self.db.transaction() as session:
                sessions = SessionRepository(session)
                await sessions.lock_user(user_id)
                if everywhere:
                    await sessions.end_all(user_id)
                else:
                    await sessions.end(identity.jti)
                if everywhere or not await sessions.any_live(user_id, utcnow()):
                    written = await self._write_event(session, "disconnected", user_id)
        if written:
            self._wake_relay()
        await self.audit.record(
            "auth.logout_everywhere" if everywhere else "auth.logout",
            user_id=identity.user_id,
            jti=identity.jti,
            ip=ip,
        )
        if self.sessions is not None:  # open sockets of this session close now
            notice = revoked_notice(identity, everywhere)
            await publish_notice(self.sessions, self.key_prefix, notice)

    async def end_expired_sessions(self, limit: int = 500) -> list[str]:
        """End the sessions whose token expired; a user left with none is disconnected
        (one `disconnected` event). Returns those users' ids. Safe on several instances:
        each user's sessions are ended under the user's row lock, and only the
        transaction that ended some of them, leaving none live, writes the event."""
        now = utcnow()
        async with self.db.sessions() as session:
            candidates = await SessionRepository(session).users_with_expired(now, limit)
        disconnected: list[str] = []
        for user_id in candidates:
            async with self.db.transaction() as session:
                sessions = SessionRepository(session)
                await sessions.lock_user(user_id)
                ended = await sessions.end_expired(user_id, now)
                last = ended > 0 and not await sessions.any_live(user_id, now)
                if last and await self._write_event(session, "disconnected", user_id):
                    disconnected.append(str(user_id))
        if disconnected:
            self._wake_relay()
        for user_id_text in disconnected:
            await self.audit.record("auth.sessions_expired", user_id=user_id_text)
        return disconnected

    async def current(self, identity: Identity) -> User:
        user = await self.get_user(identity.user_id)
        if user is None:
            raise Unauthorized("Unknown user")
        return user

    async def get_user(self, user_id: str) -> User | None:
        if not user_id.isdigit():
            return None
        async with self.db.sessions() as session:
            return await UserRepository(session).by_id(int(user_id))

    async def by_login(self, login: str) -> User | None:
        """The user with exactly this login (case folded), or None: no search."""
        async with self.db.sessions() as session:
            return await UserRepository(session).by_login(login)

    async def _write_event(self, session: AsyncSession, event: str, user_id: int) -> bool:
        """Queue a connected/disconnected event in the caller's transaction.

        False when the user no longer exists (nothing is written).
        """
        subject = await UserRepository(session).next_event_seq(user_id)
        if subject is None:
            return False
        event_id, payload = event_body(event, user_id, subject)
        routing_key = CONNECTED if event == "connected" else DISCONNECTED
        await OutboxRepository(session).add(event_id, routing_key, payload)
        return True

    async def _hashing(self, work: Awaitable[T], ip: str | None) -> T:
        """A password hash or check; a full lane (503) is an audit event too."""
        try:
            return await work
        except Overloaded as exc:
            await self.audit.record(
                "auth.password_lane_full", lane=exc.lane, ip=ip, retry_after=exc.retry_after
            )
            raise

    def _wake_relay(self) -> None:
        if self.outbox_written is not None:
            self.outbox_written.set()
