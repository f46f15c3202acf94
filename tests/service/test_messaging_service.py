"""MessagingService driven directly, on SQLite and PostgreSQL.

Everything is real but the two outward ports that announce things (events to sockets,
notifications): those are recorders kept in this file, sinks that remember what the
service published so the tests can check it. Users live in `auth_users` and are read by
the real `LocalUserDirectory`; files go to a real `DiskMediaStore`; rate limits run on
the real `MemoryCache` with a clock the tests move; audit events are stored in the
`audit_events` table by the real sink.
"""

from __future__ import annotations

import asyncio
import html
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from agora.adapters.audit_database import AuditEvent, database_sink
from agora.adapters.cache_memory import MemoryCache
from agora.adapters.media_disk import DiskMediaStore
from agora.adapters.users_grpc import GrpcUserDirectory
from agora.core.audit import Audit
from agora.core.errors import (
    AgoraError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
)
from agora.db.engine import Database
from agora.ports.users import UserDirectory
from agora.services.auth.models import User
from agora.services.auth.user_directory import LocalUserDirectory
from agora.services.messaging.content import clean_text, readable, suspicious_patterns
from agora.services.messaging.domain import Actor, Conversation, Message
from agora.services.messaging.media_types import matches
from agora.services.messaging.models import MsgMessage
from agora.services.messaging.rate_limits import MessagingLimits
from agora.services.messaging.service.messages import MessagingService
from tests.support.settings import make_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


class RecordedEvents:
    """A MessagingEvents sink: remembers each publish; `online_users` are "connected"."""

    def __init__(self) -> None:
        self.published: list[tuple[list[str], str, dict[str, Any]]] = []
        self.online_users: set[str] = set()

    async def publish(self, user_ids: Iterable[str], event: str, payload: dict[str, Any]) -> None:
        self.published.append((sorted(user_ids), event, payload))

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        return {uid for uid in user_ids if uid in self.online_users}

    def named(self, event: str) -> list[tuple[list[str], dict[str, Any]]]:
        return [(users, payload) for users, name, payload in self.published if name == event]


class RecordedNotifier:
    """A Notifier sink: remembers who was notified of what."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], dict[str, Any]]] = []

    async def notify(self, user_ids: Sequence[str], notification: dict[str, Any]) -> None:
        self.sent.append((list(user_ids), notification))

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    service: MessagingService
    db: Database
    events: RecordedEvents
    notifier: RecordedNotifier
    clock: Clock
    media_dir: Path
    user_ids: set[str] = field(default_factory=set)  # PostgreSQL is shared by the tests

    async def user(self, name: str = "User") -> Actor:
        login = f"u{uuid.uuid4().hex[:12]}"
        async with self.db.transaction() as session:
            user = User(
                login=login,
                login_key=login,
                email=f"{login}@example.com",
                email_key=f"{login}@example.com",
                name=name,
                password_hash="not-a-hash",
            )
            session.add(user)
            await session.flush()
        self.user_ids.add(str(user.id))
        return Actor(str(user.id), ip="203.0.113.7")

    async def audits(self, event: str) -> list[dict[str, Any]]:
        """This world's audit events named `event`, oldest first."""
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(AuditEvent.data)
                .where(AuditEvent.event == event, AuditEvent.user_id.in_(self.user_ids))
                .order_by(AuditEvent.id)
            )
            return [orjson.loads(data) for data in rows.scalars()]

    async def stored_count(self, conversation_id: str) -> int:
        async with self.db.sessions() as session:
            count = await session.scalar(
                select(func.count()).where(MsgMessage.conversation_id == conversation_id)
            )
            return int(count or 0)

    async def direct(self, a: Actor, b: Actor) -> Conversation:
        conversation, _ = await self.service.create_direct(a, b.user_id)
        return conversation

    async def send(self, actor: Actor, conversation: Conversation, text: str) -> Message:
        result = await self.service.send(actor, conversation.id, uuid.uuid4().hex, text=text)
        return result.message


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(database_url: str, tmp_path: Path) -> AsyncIterator[MakeWorld]:
    databases: list[Database] = []

    async def build(users: UserDirectory | None = None, **overrides: Any) -> World:
        settings = make_settings(tmp_path, database_url=database_url, **overrides)
        db = Database(database_url)
        databases.append(db)
        audit = Audit("messaging", database_sink(db))
        clock = Clock()
        events, notifier = RecordedEvents(), RecordedNotifier()
        media_dir = tmp_path / f"media-{len(databases)}"
        service = MessagingService(
            db=db,
            users=users or LocalUserDirectory(db),
            media=DiskMediaStore(media_dir),
            events=events,
            notifier=notifier,
            limits=MessagingLimits(MemoryCache(clock), settings, audit),
            audit=audit,
            settings=settings,
        )
        return World(service, db, events, notifier, clock, media_dir)

    yield build
    for db in databases:
        await db.close()


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def media_files(world: World) -> list[Path]:
    return (
        [p for p in world.media_dir.rglob("*") if p.is_file()] if world.media_dir.exists() else []
    )


# --- conversations ----------------------------------------------------------------------


async def test_one_direct_conversation_per_pair(world: World) -> None:
    a, b = await world.user(), await world.user()
    first, created = await world.service.create_direct(a, b.user_id)
    again, created_again = await world.service.create_direct(b, a.user_id)
    assert created and not created_again
    assert again.id == first.id and first.kind == "direct" and first.owner_id is None
    assert set(first.members) == {a.user_id, b.user_id}
    assert world.events.named("conversation:updated") == [
        (sorted([a.user_id, b.user_id]), first.to_json())
    ]
    with pytest.raises(Invalid) as itself:
        await world.service.create_direct(a, a.user_id)
    assert itself.value.field == "user_id"
    with pytest.raises(Invalid) as unknown:
        await world.service.create_direct(a, "987654321")
    assert unknown.value.field == "user_id"


async def test_concurrent_direct_creation_makes_one(world: World) -> None:
    a, b = await world.user(), await world.user()
    results = await asyncio.gather(
        *(world.service.create_direct(*pair) for pair in [(a, b.user_id), (b, a.user_id)] * 3)
    )
    assert len({conversation.id for conversation, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_group_owner_rules(world: World) -> None:
    owner, b, c, d = [await world.user() for _ in range(4)]
    group = await world.service.create_group(owner, " <b>Team</b> & co ", [b.user_id, b.user_id])
    assert group.title == "Team &amp; co" and group.owner_id == owner.user_id
    assert group.members == (owner.user_id, b.user_id)

    with pytest.raises(Forbidden):
        await world.service.rename_group(b, group.id, "Mine now")
    with pytest.raises(Forbidden):
        await world.service.add_members(b, group.id, [c.user_id])
    assert [e["action"] for e in await world.audits("messaging.forbidden")] == [
        "rename",
        "add_members",
    ]
    renamed = await world.service.rename_group(owner, group.id, "Renamed")
    assert renamed.title == "Renamed"
    grown = await world.service.add_members(owner, group.id, [c.user_id, d.user_id, b.user_id])
    assert grown.members == (owner.user_id, b.user_id, c.user_id, d.user_id)
    with pytest.raises(Invalid) as unknown:
        await world.service.add_members(owner, group.id, ["987654321"])
    assert unknown.value.field == "user_ids"

    with pytest.raises(Forbidden):
        await world.service.remove_member(b, group.id, c.user_id)
    with pytest.raises(Invalid):  # the owner cannot leave their group
        await world.service.remove_member(owner, group.id, owner.user_id)
    shrunk = await world.service.remove_member(owner, group.id, c.user_id)
    assert c.user_id not in shrunk.members
    # The removed member is told too, then the conversation is gone for them.
    last_update = world.events.named("conversation:updated")[-1]
    assert c.user_id in last_update[0]
    with pytest.raises(NotFound):
        await world.service.get_conversation(c, group.id)
    left = await world.service.remove_member(d, group.id, d.user_id)
    assert left.members == (owner.user_id, b.user_id)
    with pytest.raises(NotFound):
        await world.service.remove_member(owner, group.id, d.user_id)

    direct = await world.direct(owner, b)
    for change in (
        world.service.rename_group(owner, direct.id, "x"),
        world.service.add_members(owner, direct.id, [c.user_id]),
        world.service.remove_member(owner, direct.id, b.user_id),
    ):
        with pytest.raises(Invalid):
            await change


async def test_group_limits(make_world: MakeWorld) -> None:
    world = await make_world(messaging_group_max_members=3, messaging_group_max_title_chars=10)
    owner, b, c, d = [await world.user() for _ in range(4)]
    for title in ("", "   ", "<i></i>", "x" * 11):
        with pytest.raises(Invalid) as bad_title:
            await world.service.create_group(owner, title, [b.user_id])
        assert bad_title.value.field == "title"
    with pytest.raises(Invalid) as too_many:
        await world.service.create_group(owner, "Big", [b.user_id, c.user_id, d.user_id])
    assert too_many.value.field == "members"
    group = await world.service.create_group(owner, "Small", [b.user_id, c.user_id])
    with pytest.raises(Invalid):
        await world.service.add_members(owner, group.id, [d.user_id])
    with pytest.raises(Invalid):
        await world.service.create_group(owner, "Bad", "123")  # a string is not a list of ids


async def test_users_unavailable_is_503(make_world: MakeWorld) -> None:
    unreachable = GrpcUserDirectory("127.0.0.1:1", deadline=0.2, retries=1)
    world = await make_world(users=unreachable)
    a = await world.user()
    try:
        with pytest.raises(ServiceUnavailable) as error:
            await world.service.create_direct(Actor(a.user_id, token="t"), "12345")
    finally:
        await unreachable.close()
    assert error.value.status_code == 503


async def test_non_members_get_404_everywhere(world: World) -> None:
    a, b, stranger = await world.user(), await world.user(), await world.user()
    conversation = await world.direct(a, b)
    message = await world.send(a, conversation, "private")
    service, cid = world.service, conversation.id
    calls: list[Awaitable[Any]] = [
        service.get_conversation(stranger, cid),
        service.describe_members(stranger, cid),
        service.list_messages(stranger, cid, before=None, after=None, limit=10),
        service.send(stranger, cid, "c1", text="hi"),
        service.edit(stranger, cid, message.id, "x"),
        service.delete(stranger, cid, message.id),
        service.mark_read(stranger, cid, 1),
        service.unread_count(stranger, cid),
        service.catch_up(stranger, cid, 0, None),
        service.rename_group(stranger, cid, "x"),
        service.add_members(stranger, cid, [stranger.user_id]),
        service.remove_member(stranger, cid, a.user_id),
        service.get_conversation(a, "not-an-id"),
        service.get_conversation(a, uuid.uuid4().hex),
        service.edit(a, cid, uuid.uuid4().hex, "x"),
        service.delete(a, cid, "../etc"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    listed, _ = await service.list_conversations(stranger, 10, None)
    assert listed == [] and await service.unread_counts(stranger) == {}


async def test_list_conversations_pages_by_activity(world: World) -> None:
    me = await world.user()
    others = [await world.user() for _ in range(5)]
    conversations = [await world.direct(me, other) for other in others]
    await world.send(others[1], conversations[1], "wake up")  # the most recent now
    first, cursor = await world.service.list_conversations(me, 2, None)
    assert first[0].conversation.id == conversations[1].id
    assert first[0].unread == 1 and first[0].last_message is not None
    assert first[0].last_message.text == "wake up"
    seen = [s.conversation.id for s in first]
    while cursor is not None:
        page, cursor = await world.service.list_conversations(me, 2, cursor)
        seen += [s.conversation.id for s in page]
    assert sorted(seen) == sorted(c.id for c in conversations) and len(seen) == 5
    for bad in ("nope", "bm9wZQ", "MTIzLnh5eg"):
        with pytest.raises(Invalid) as error:
            await world.service.list_conversations(me, 2, bad)
        assert error.value.field == "cursor"
    for bad_limit in (0, 101):
        with pytest.raises(Invalid):
            await world.service.list_conversations(me, bad_limit, None)
    members = await world.service.describe_members(me, conversations[0].id)
    assert {m.id for m in members} == {me.user_id, others[0].user_id}


# --- messages -----------------------------------------------------------------------------


async def test_send_is_idempotent_per_client_id(make_world: MakeWorld) -> None:
    world = await make_world(messaging_messages_per_hour=2)
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    first = await world.service.send(a, conversation.id, "client-1", text="hello")
    again = await world.service.send(a, conversation.id, "client-1", text="hello")
    assert first.created and not again.created
    assert again.message == first.message and first.message.seq == 1
    assert await world.stored_count(conversation.id) == 1
    assert len(world.events.named("message:new")) == 1
    # The replay was not counted: a second message still fits in the limit of 2.
    assert (await world.service.send(a, conversation.id, "client-2", text="x")).created
    # Another author may use the same client id.
    theirs = await world.service.send(b, conversation.id, "client-1", text="mine")
    assert theirs.created and theirs.message.seq == 3


async def test_concurrent_sends_get_contiguous_seqs(world: World) -> None:
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    results = await asyncio.gather(
        *(
            world.service.send(a if i % 2 else b, conversation.id, f"c{i}", text=f"m{i}")
            for i in range(20)
        )
    )
    assert sorted(r.message.seq for r in results) == list(range(1, 21))
    assert sorted(r.message.version for r in results) == list(range(1, 21))
    duplicates = await asyncio.gather(
        *(world.service.send(a, conversation.id, "same", text="once") for _ in range(5))
    )
    assert sum(r.created for r in duplicates) == 1
    assert len({r.message.id for r in duplicates}) == 1
    assert await world.stored_count(conversation.id) == 21
    summary = await world.service.get_conversation(a, conversation.id)
    assert summary.conversation.last_seq == 21 and summary.conversation.last_version == 21


async def test_edit_and_delete_by_the_author_only(world: World) -> None:
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    message = await world.send(a, conversation, "first draft")
    with pytest.raises(Forbidden):
        await world.service.edit(b, conversation.id, message.id, "hacked")
    with pytest.raises(Forbidden):
        await world.service.delete(b, conversation.id, message.id)
    assert len(await world.audits("messaging.forbidden")) == 2

    edited = await world.service.edit(a, conversation.id, message.id, "final <i>text</i>")
    assert edited.text == "final text" and edited.edited_at is not None
    assert edited.seq == message.seq and edited.version == message.version + 1
    assert world.events.named("message:updated")[-1][1] == edited.to_json()

    deleted = await world.service.delete(a, conversation.id, message.id)
    assert deleted.deleted and deleted.text is None and deleted.media is None
    assert deleted.version == edited.version + 1
    assert world.events.named("message:deleted")[-1][1]["deleted"] is True
    again = await world.service.delete(a, conversation.id, message.id)
    assert again == deleted and len(world.events.named("message:deleted")) == 1
    with pytest.raises(Conflict):
        await world.service.edit(a, conversation.id, message.id, "back")
    summary = await world.service.get_conversation(a, conversation.id)
    assert summary.conversation.last_version == deleted.version  # refusals took none
    page = await world.service.list_messages(a, conversation.id, before=None, after=None, limit=5)
    assert [m.id for m in page.messages] == [message.id] and page.messages[0].deleted


async def test_list_messages_both_ways(world: World) -> None:
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    sent = [await world.send(a if i % 2 else b, conversation, f"m{i}") for i in range(1, 8)]
    await world.service.delete(b, conversation.id, sent[3].id)  # seq 4, b's

    async def seqs(before: int | None, after: int | None, limit: int) -> tuple[list[int], bool]:
        page = await world.service.list_messages(
            a, conversation.id, before=before, after=after, limit=limit
        )
        return [m.seq for m in page.messages], page.has_more

    assert await seqs(None, None, 3) == ([5, 6, 7], True)
    assert await seqs(5, None, 3) == ([2, 3, 4], True)
    assert await seqs(2, None, 3) == ([1], False)
    assert await seqs(None, 0, 3) == ([1, 2, 3], True)
    assert await seqs(None, 4, 3) == ([5, 6, 7], False)
    assert await seqs(None, 7, 3) == ([], False)
    assert await seqs(None, None, 100) == (list(range(1, 8)), False)
    page = await world.service.list_messages(a, conversation.id, before=5, after=None, limit=1)
    assert page.messages[0].deleted  # tombstones stay in place
    for before, after, limit in ((3, 1, 5), (-1, None, 5), (None, -2, 5), (None, None, 0)):
        with pytest.raises(Invalid):
            await seqs(before, after, limit)


async def test_read_cursors_and_unread_counts(world: World) -> None:
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    other = await world.direct(b, await world.user())
    for i in range(3):
        await world.send(a, conversation, f"m{i}")
    assert await world.service.unread_count(b, conversation.id) == 3
    assert await world.service.unread_count(a, conversation.id) == 0  # one's own
    assert await world.service.unread_counts(b) == {conversation.id: 3, other.id: 0}

    receipt = await world.service.mark_read(b, conversation.id, 2)
    assert (receipt.read_seq, receipt.unread) == (2, 1)
    users, payload = world.events.named("receipt")[-1]
    assert users == sorted([a.user_id, b.user_id]) and payload == receipt.to_json()
    backwards = await world.service.mark_read(b, conversation.id, 1)
    assert (backwards.read_seq, backwards.unread) == (2, 1)  # never moves back
    assert len(world.events.named("receipt")) == 1  # nothing moved, nothing announced
    top = await world.service.mark_read(b, conversation.id, 10_000)
    assert (top.read_seq, top.unread) == (3, 0)  # clamped to the last seq
    with pytest.raises(Invalid) as negative:
        await world.service.mark_read(b, conversation.id, -1)
    assert negative.value.field == "seq"

    mine = await world.send(b, conversation, "my own")  # sending moves one's own cursor
    summary = await world.service.get_conversation(b, conversation.id)
    assert (summary.read_seq, summary.unread) == (mine.seq, 0)
    assert await world.service.unread_count(a, conversation.id) == 1

    # A deleted message of others is not unread any more.
    extra = [await world.send(a, conversation, f"late {i}") for i in range(2)]
    assert await world.service.unread_count(b, conversation.id) == 2
    await world.service.delete(a, conversation.id, extra[0].id)
    assert await world.service.unread_count(b, conversation.id) == 1
    listed, _ = await world.service.list_conversations(b, 10, None)
    assert {s.conversation.id: s.unread for s in listed} == await world.service.unread_counts(b)
    assert await world.service.unread_counts(b) == {conversation.id: 1, other.id: 0}
    catchup = await world.service.catch_up(b, conversation.id, 0, None)
    assert (catchup.read_seq, catchup.unread) == (4, 1)


async def test_catch_up_is_exact(make_world: MakeWorld) -> None:
    world = await make_world(messaging_sync_max_messages=5)
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    sent = [await world.send(a, conversation, f"m{i}") for i in range(1, 4)]
    known = await world.service.catch_up(b, conversation.id, 3, 3)
    assert known.recovered and known.messages == [] and known.last_seq == 3
    for i in (4, 5):
        await world.send(b, conversation, f"m{i}")
    await world.service.edit(a, conversation.id, sent[1].id, "m2 edited")
    await world.service.delete(a, conversation.id, sent[0].id)
    await world.send(a, conversation, "m6")

    full = await world.service.catch_up(b, conversation.id, 3, 3)
    assert full.recovered and (full.last_seq, full.last_version) == (6, 8)
    assert [(m.seq, m.version) for m in full.messages] == [(4, 4), (5, 5), (2, 6), (1, 7), (6, 8)]
    assert full.messages[2].text == "m2 edited" and full.messages[3].deleted
    new_only = await world.service.catch_up(b, conversation.id, 3, None)
    assert [m.seq for m in new_only.messages] == [4, 5, 6]
    at_cap = await world.service.catch_up(b, conversation.id, 1, None)
    assert at_cap.recovered and len(at_cap.messages) == 5  # exactly the cap
    gap = await world.service.catch_up(b, conversation.id, 0, None)
    assert not gap.recovered and gap.messages == [] and gap.last_seq == 6
    assert gap.to_json()["hint"] == f"GET /api/v1/conversations/{conversation.id}/messages"
    for last_seq, last_version in ((-1, None), (0, -1)):
        with pytest.raises(Invalid):
            await world.service.catch_up(b, conversation.id, last_seq, last_version)


async def test_offline_members_are_notified(world: World) -> None:
    a, b, c = await world.user(), await world.user(), await world.user()
    group = await world.service.create_group(a, "Trio", [b.user_id, c.user_id])
    world.events.online_users = {b.user_id}
    message = await world.send(a, group, "a < b & <script>x</script>" + "long " * 40)
    preview = html.escape(("a < b & " + "long " * 40).strip()[:100], quote=False)
    assert world.notifier.sent == [
        (
            [c.user_id],
            {
                "type": "message",
                "conversation_id": group.id,
                "message_id": message.id,
                "seq": 1,
                "author_id": a.user_id,
                "kind": "text",
                "preview": preview,
            },
        )
    ]
    users, payload = world.events.named("message:new")[-1]
    assert users == sorted([a.user_id, b.user_id, c.user_id]) and payload == message.to_json()


# --- content --------------------------------------------------------------------------------


async def test_text_is_sanitized_and_suspicious_content_audited(world: World) -> None:
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    stored = await world.send(a, conversation, " <script>alert(1)</script>Hi <b>you</b> & me ")
    assert stored.text == "Hi you &amp; me" and readable(stored.text) == "Hi you & me"
    again = await world.service.edit(a, conversation.id, stored.id, stored.text)
    assert again.text == stored.text  # sending safe text back does not double-escape
    with pytest.raises(Invalid):  # nothing left once the attack is removed
        await world.send(a, conversation, '<img src=x onerror="alert(1)">')
    flood = await world.send(a, conversation, "ha" * 100)
    assert flood.text == "ha" * 100
    for control in ("\x00", "\x1b", "\u202e"):  # the user-text policy: refused, not stripped
        with pytest.raises(Invalid):
            await world.send(a, conversation, f"nothing to see{control} here")

    audited = await world.audits("messaging.suspicious_content")
    assert [entry["patterns"] for entry in audited] == [
        ["script_tag"],
        ["event_handler"],
        ["repeated_run"],
    ]
    assert audited[0]["user_id"] == a.user_id and audited[0]["conversation_id"] == conversation.id
    await world.service.create_group(a, "<svg onload=alert(1)>Team", [])
    assert (await world.audits("messaging.suspicious_content"))[-1]["patterns"] == [
        "dangerous_tag",
        "event_handler",
    ]


def test_content_rules() -> None:
    assert clean_text("a < b") == "a &lt; b" and clean_text("&#106;s &eacute;") == "js é"
    assert clean_text(clean_text("x & <y>")) == clean_text("x & <y>")
    assert suspicious_patterns("see &#106;avascript:alert(1)") == ["javascript_url"]
    assert suspicious_patterns("<a href='data:text/html,x'>") == ["data_html_url"]
    assert suspicious_patterns("a normal message, on=off") == []
    assert suspicious_patterns("a" * 63) == [] and suspicious_patterns("a" * 64) == ["repeated_run"]


async def test_bad_messages_are_422(make_world: MakeWorld) -> None:
    world = await make_world(messaging_max_message_chars=20)
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    send = world.service.send
    cases: list[tuple[Awaitable[Any], str]] = [
        (send(a, conversation.id, "", text="x"), "client_id"),
        (send(a, conversation.id, "has space", text="x"), "client_id"),
        (send(a, conversation.id, "x" * 65, text="x"), "client_id"),
        (send(a, conversation.id, "c1"), "text"),
        (send(a, conversation.id, "c1", text="x", media_id=uuid.uuid4().hex), "text"),
        (send(a, conversation.id, "c1", text="   \n "), "text"),
        (send(a, conversation.id, "c1", text="<p></p>"), "text"),
        (send(a, conversation.id, "c1", text="x" * 21), "text"),
        (send(a, conversation.id, "c1", text=5), "text"),  # type: ignore[arg-type]
        (send(a, conversation.id, "c1", media_id="../../etc/passwd"), "media_id"),
        (send(a, conversation.id, "c1", media_id=uuid.uuid4().hex), "media_id"),
    ]
    for call, field_name in cases:
        with pytest.raises(Invalid) as error:
            await call
        assert error.value.field == field_name and error.value.status_code == 422
    assert (await send(a, conversation.id, "ok:1_a.b-c", text="x" * 20)).created
    assert await world.stored_count(conversation.id) == 1


# --- rate limits ---------------------------------------------------------------------------


async def test_message_rate_limit_blocks_grow(make_world: MakeWorld) -> None:
    world = await make_world(messaging_messages_per_hour=3, realtime_block_seconds=60)
    a, b = await world.user(), await world.user()
    conversation = await world.direct(a, b)
    for _ in range(3):
        await world.send(a, conversation, "ok")
    with pytest.raises(TooManyRequests) as first:
        await world.send(a, conversation, "over")
    assert first.value.retry_after == 60 and first.value.message == "Too many messages"
    world.clock.now += 30
    with pytest.raises(TooManyRequests) as during:
        await world.send(a, conversation, "still blocked")
    assert during.value.retry_after == 30
    world.clock.now += 31  # the block is over
    for _ in range(3):
        await world.send(a, conversation, "ok again")
    with pytest.raises(TooManyRequests) as second:
        await world.send(a, conversation, "over again")
    assert second.value.retry_after == 120  # the second block lasts twice as long
    audited = await world.audits("messaging.rate_limited")
    assert [(e["level"], e["scope"], e["kind"]) for e in audited] == [
        (1, "user", "messages"),
        (2, "user", "messages"),
    ]
    assert await world.stored_count(conversation.id) == 6
    # b is not limited by a's block.
    assert (await world.service.send(b, conversation.id, "b1", text="fine")).created


async def test_rate_limit_per_ip(make_world: MakeWorld) -> None:
    world = await make_world(messaging_messages_per_ip_per_hour=2)
    a, b = await world.user(), await world.user()  # both from 203.0.113.7
    conversation = await world.direct(a, b)
    await world.send(a, conversation, "1")
    await world.send(b, conversation, "2")
    with pytest.raises(TooManyRequests):
        await world.send(a, conversation, "3")
    assert (await world.audits("messaging.rate_limited"))[0]["scope"] == "ip"
    elsewhere = Actor(a.user_id, ip="198.51.100.1")
    assert (await world.service.send(elsewhere, conversation.id, "c", text="4")).created


# --- media -----------------------------------------------------------------------------------


async def test_media_upload_send_and_access(world: World) -> None:
    a, b, stranger = await world.user(), await world.user(), await world.user()
    conversation = await world.direct(a, b)
    upload = await world.service.upload_media(
        a, "Image/PNG; charset=binary", "../../evil<b>.png", chunks_of(PNG, 7)
    )
    assert (upload.content_type, upload.size, upload.filename) == (
        "image/png",
        len(PNG),
        "evil.png",
    )
    with pytest.raises(Invalid) as foreign:  # not b's upload
        await world.service.send(b, conversation.id, "m", media_id=upload.id)
    assert foreign.value.field == "media_id"

    with pytest.raises(NotFound):  # not shared yet
        await world.service.open_media(b, upload.id)
    sent = await world.service.send(a, conversation.id, "m", media_id=upload.id)
    assert sent.message.kind == "media" and sent.message.media == upload
    assert sent.message.text is None
    with pytest.raises(Invalid):
        await world.service.edit(a, conversation.id, sent.message.id, "a caption")
    for reader in (a, b):
        ref, stream = await world.service.open_media(reader, upload.id)
        assert ref == upload and b"".join([chunk async for chunk in stream]) == PNG
    for call in (
        world.service.open_media(stranger, upload.id),
        world.service.open_media(a, "../" + upload.id),
    ):
        with pytest.raises(NotFound):
            await call

    tombstone = await world.service.delete(a, conversation.id, sent.message.id)
    assert tombstone.media is None
    with pytest.raises(NotFound):  # no message refers to it any more
        await world.service.open_media(b, upload.id)


async def test_media_type_and_size_checks(make_world: MakeWorld) -> None:
    world = await make_world(media_max_bytes=1024, messaging_media_per_hour=1000)
    a = await world.user()
    refusals: list[tuple[str, bytes, type[AgoraError]]] = [
        ("text/html", b"<html>", UnsupportedMediaType),
        ("image/png", JPEG, UnsupportedMediaType),  # a JPEG named PNG
        ("application/pdf", b"#!/bin/sh\nrm -rf /", UnsupportedMediaType),
        ("image/png", b"", Invalid),
        ("image/png", PNG + b"\x00" * 2000, PayloadTooLarge),
    ]
    for content_type, data, error in refusals:
        with pytest.raises(error):
            await world.service.upload_media(a, content_type, "f", chunks_of(data, 100))
    assert media_files(world) == []  # nothing left behind
    exact = await world.service.upload_media(a, "image/png", "f.png", chunks_of(PNG.ljust(1024)))
    assert exact.size == 1024 and len(media_files(world)) == 1


async def test_media_rate_limit(make_world: MakeWorld) -> None:
    world = await make_world(messaging_media_per_hour=1)
    a = await world.user()
    await world.service.upload_media(a, "image/jpeg", "a.jpg", chunks_of(JPEG))
    with pytest.raises(TooManyRequests) as error:
        await world.service.upload_media(a, "image/jpeg", "b.jpg", chunks_of(JPEG))
    assert error.value.message == "Too many uploads" and error.value.retry_after == 60
    assert (await world.audits("messaging.rate_limited"))[0]["kind"] == "media"


@pytest.mark.parametrize(
    ("content_type", "head", "expected"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xdb", True),
        ("image/png", PNG[:16], True),
        ("image/gif", b"GIF89a....", True),
        ("image/gif", b"GIF90a....", False),
        ("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ", True),
        ("image/webp", b"RIFF\x00\x00\x00\x00WAVEfmt ", False),
        ("video/mp4", b"\x00\x00\x00\x18ftypmp42", True),
        ("audio/mpeg", b"ID3\x03\x00", True),
        ("audio/mpeg", b"\xff\xfb\x90\x00", True),
        ("audio/mpeg", b"\xff\xd8\xff\xe0", False),  # a JPEG
        ("audio/ogg", b"OggS\x00\x02", True),
        ("application/pdf", b"%PDF-1.7\n", True),
        ("text/plain", b"hello", False),  # no signature known: cannot be checked
    ],
)
def test_media_signatures(content_type: str, head: bytes, expected: bool) -> None:
    assert matches(content_type, head) is expected
