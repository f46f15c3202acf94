"""The send's store (repository_send.py) and the cached member lists, on SQLite and
PostgreSQL: a non-member stores nothing, a resent client id fails the store whole and
stores nothing, seqs stay gapless under concurrency, the author's cursor moves, and a
removed member stops receiving at once, whichever process removed them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agora.core.errors import NotFound
from agora.db.engine import utcnow
from agora.services.messaging.domain import Actor, Conversation, Message
from agora.services.messaging.models import MsgConversation, MsgMember, MsgMessage
from agora.services.messaging.repository import MessagingRepository
from agora.services.messaging.repository_send import SendRepository, StoreOutcome, StoreResult
from agora.services.messaging.service.member_lists import MemberLists
from tests.service.test_messaging_service import MakeWorld, World, make_world, world

__all__ = ["make_world", "world"]  # fixtures, used by name


def draft(conversation_id: str, author: Actor, client_id: str, text: str = "hi") -> Message:
    return Message(
        id=uuid.uuid4().hex,
        conversation_id=conversation_id,
        seq=0,
        version=0,
        author_id=author.user_id,
        client_id=client_id,
        kind="text",
        text=text,
        media=None,
        created_at=utcnow(),
    )


async def store(world: World, message: Message) -> StoreResult:
    return (await SendRepository(world.db).store_messages([message]))[0]


async def state(world: World, conversation_id: str) -> dict[str, Any]:
    async with world.db.sessions() as session:
        row = (
            await session.execute(
                select(MsgConversation.last_seq, MsgConversation.last_version).where(
                    MsgConversation.id == conversation_id
                )
            )
        ).one()
        seqs = (
            await session.scalars(
                select(MsgMessage.seq)
                .where(MsgMessage.conversation_id == conversation_id)
                .order_by(MsgMessage.seq)
            )
        ).all()
        cursors = dict(
            (
                await session.execute(
                    select(MsgMember.user_id, MsgMember.read_seq).where(
                        MsgMember.conversation_id == conversation_id
                    )
                )
            ).all()
        )
    return {"last_seq": row.last_seq, "last_version": row.last_version, "seqs": list(seqs),
            "cursors": cursors}  # fmt: skip


async def group_of(world: World, count: int) -> tuple[Conversation, list[Actor]]:
    people = [await world.user() for _ in range(count)]
    conversation = await world.service.create_group(
        people[0], "Team", [p.user_id for p in people[1:]]
    )
    return conversation, people


async def test_store_guarantees(world: World) -> None:
    conversation, (a, b) = await group_of(world, 2)
    stranger = await world.user()
    cid = conversation.id

    refused = await store(world, draft(cid, stranger, "x-1"))
    assert refused.outcome is StoreOutcome.NOT_MEMBER
    assert (await state(world, cid))["seqs"] == []

    sent = draft(cid, a, "a-1")
    first = await store(world, sent)
    assert (first.outcome, first.seq, first.version) == (StoreOutcome.STORED_NEW, 1, 1)
    # Times are stored as SQLAlchemy stores them (SQLite compares them as text).
    async with world.db.sessions() as session:
        at = sent.created_at
        assert await session.scalar(
            select(func.count()).where(MsgMessage.created_at == at, MsgMessage.id == sent.id)
        ) == 1  # fmt: skip
        assert await session.scalar(
            select(func.count()).where(
                MsgConversation.last_activity_at == at, MsgConversation.id == cid
            )
        ) == 1  # fmt: skip
    after = await state(world, cid)
    assert after["cursors"] == {a.user_id: 1, b.user_id: 0}  # the author's cursor only
    assert (after["last_seq"], after["last_version"], after["seqs"]) == (1, 1, [1])

    # A client id stored before fails the store whole (the unique index judges): alone,
    # or in a batch with a fresh one, nothing is stored, no seq is taken.
    with pytest.raises(IntegrityError):
        await store(world, draft(cid, a, "a-1", text="resent"))
    with pytest.raises(IntegrityError):
        await SendRepository(world.db).store_messages(
            [draft(cid, a, "a-2"), draft(cid, a, "a-1", text="resent")]
        )
    assert await state(world, cid) == after  # nothing stored, nothing counted

    theirs = await store(world, draft(cid, b, "a-1"))  # another author, same client id
    assert (theirs.outcome, theirs.seq) == (StoreOutcome.STORED_NEW, 2)
    assert (await state(world, cid))["cursors"] == {a.user_id: 1, b.user_id: 2}


async def test_concurrent_stores_stay_gapless(world: World) -> None:
    conversation, people = await group_of(world, 4)
    cid = conversation.id

    async def attempt(message: Message) -> StoreResult | None:
        try:
            return await store(world, message)
        except IntegrityError:  # a concurrent send of the same client id won
            return None

    fresh = [draft(cid, people[i % 4], f"c-{i}") for i in range(24)]
    same = [draft(cid, people[0], "same") for _ in range(6)]
    results = await asyncio.gather(*(attempt(m) for m in [*fresh, *same]))
    created = [r for r in results if r is not None and r.outcome is StoreOutcome.STORED_NEW]
    assert len(created) == 25  # every fresh one, and the "same" client id once
    final = await state(world, cid)
    assert final["seqs"] == list(range(1, 26)) == sorted(r.seq for r in created)
    assert final["last_seq"] == final["last_version"] == 25
    for person in people:  # each author's cursor is at their last message
        mine = [r.seq for m, r in zip([*fresh, *same], results, strict=True)
                if r is not None and r.outcome is StoreOutcome.STORED_NEW
                and m.author_id == person.user_id]  # fmt: skip
        assert final["cursors"][person.user_id] == max(mine)


async def test_a_batch_takes_consecutive_seqs_or_fails_whole(world: World) -> None:
    conversation, (a, b) = await group_of(world, 2)
    cid = conversation.id
    await store(world, draft(cid, a, "early"))
    batch = [draft(cid, a, "one", text="1"), draft(cid, a, "two", text="2")]
    results = await SendRepository(world.db).store_messages(batch)
    assert [(r.outcome, r.seq, r.version) for r in results] == [
        (StoreOutcome.STORED_NEW, 2, 2), (StoreOutcome.STORED_NEW, 3, 3)
    ]  # fmt: skip
    after = await state(world, cid)
    assert (after["last_seq"], after["last_version"], after["seqs"]) == (3, 3, [1, 2, 3])
    assert after["cursors"] == {a.user_id: 3, b.user_id: 0}
    # An earlier client id in a batch: the batch fails whole, its fresh ones included.
    with pytest.raises(IntegrityError):
        await SendRepository(world.db).store_messages(
            [draft(cid, a, "three"), draft(cid, a, "early", text="resent")]
        )
    async with world.db.sessions() as session:
        texts = (await session.scalars(
            select(MsgMessage.text).where(MsgMessage.conversation_id == cid)
            .order_by(MsgMessage.seq)
        )).all()  # fmt: skip
    assert list(texts) == ["hi", "1", "2"]
    assert await state(world, cid) == after
    stranger = await world.user()
    refused = await SendRepository(world.db).store_messages(
        [draft(cid, stranger, "s-1"), draft(cid, stranger, "s-2")]
    )
    assert [r.outcome for r in refused] == [StoreOutcome.NOT_MEMBER] * 2
    assert (await state(world, cid))["seqs"] == [1, 2, 3]


class LoopTurns:
    """Counts the turns of the event loop (a callback that schedules itself again)."""

    def __init__(self) -> None:
        self.now = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.now += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def test_a_burst_of_sends_is_stored_in_batches_in_call_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sends started together share statements (group commit), yet their seqs follow
    the order of the calls; one client id twice in the burst is stored once."""
    conversation, (a, _) = await group_of(world, 2)
    batches: list[int] = []
    store_messages = SendRepository.store_messages

    async def counted(repository: SendRepository, messages: list[Message]) -> list[StoreResult]:
        batches.append(len(messages))
        return await store_messages(repository, messages)

    monkeypatch.setattr(SendRepository, "store_messages", counted)
    client_ids = [f"m-{n}" for n in range(12)]
    results = await asyncio.gather(
        *(world.service.send(a, conversation.id, c, text=c) for c in client_ids)
    )
    assert [r.message.seq for r in results] == list(range(1, 13))
    assert [r.message.text for r in results] == client_ids
    assert len(batches) < len(client_ids)  # some shared a statement
    pushed = [payload["seq"] for _, payload in world.events.named("message:new")]
    assert pushed == list(range(1, 13))  # announced in seq order
    # The same client id twice in one burst (PostgreSQL: the batch fails the unique
    # index, and each is stored alone): stored once, both answered with it.
    twice = await asyncio.gather(
        *(world.service.send(a, conversation.id, c, text=c) for c in ("n-1", "n-2", "n-1"))
    )
    assert [r.created for r in twice] == [True, True, False]
    assert twice[2].message.id == twice[0].message.id
    assert (await state(world, conversation.id))["seqs"] == list(range(1, 15))
    # A batch's pushes are queued in one turn of the loop, to leave together (one
    # pub/sub call, one write per device: socket/fanout.py).
    turns = LoopTurns()
    publish = world.events.publish

    async def turn_noted(user_ids: Any, event: str, payload: dict[str, Any]) -> None:
        pushed_in.append(turns.now)
        await publish(user_ids, event, payload)

    pushed_in: list[int] = []
    monkeypatch.setattr(world.events, "publish", turn_noted)
    batches.clear()
    await asyncio.gather(
        *(world.service.send(a, conversation.id, f"t-{n}", text="x") for n in range(6))
    )
    turns.stop()
    shares = [pushed_in.count(turn) for turn in dict.fromkeys(pushed_in)]
    assert shares == batches  # one turn per batch, each with all of its pushes


async def test_the_checks_of_a_burst_share_statements(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks before the stores are batched too: a burst mixing new client ids
    with resent ones answers each resend with its earlier message, and a stranger's
    burst is refused whole."""
    conversation, (a, _) = await group_of(world, 2)
    early = await world.service.send(a, conversation.id, "early", text="first")
    checks: list[list[str]] = []
    check_sends = SendRepository.check_sends

    async def counted(
        repository: SendRepository, cid: str, author: str, client_ids: list[str]
    ) -> tuple[bool, list[str | None]]:
        checks.append(list(client_ids))
        return await check_sends(repository, cid, author, client_ids)

    monkeypatch.setattr(SendRepository, "check_sends", counted)
    client_ids = ["c-0", "early", "c-1", "c-2", "early", "c-3"]
    results = await asyncio.gather(
        *(world.service.send(a, conversation.id, c, text=c) for c in client_ids)
    )
    assert [c for batch in checks for c in batch] == client_ids  # each checked, in order
    assert len(checks) < len(client_ids)  # some shared a statement
    assert [r.created for r in results] == [True, False, True, True, False, True]
    assert results[1].message == results[4].message == early.message
    assert [r.message.seq for r in results] == [2, 1, 3, 4, 1, 5]
    stranger = await world.user()
    refused = await asyncio.gather(
        *(world.service.send(stranger, conversation.id, f"s-{n}", text="x") for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, NotFound) for r in refused)
    assert (await state(world, conversation.id))["seqs"] == [1, 2, 3, 4, 5]


async def test_removal_committed_while_a_store_waits(world: World) -> None:
    """The store waits for the conversation's lock behind a removal of its author; once
    the removal commits, nothing is stored (PostgreSQL re-runs on a fresh snapshot)."""
    conversation, (_, leaver) = await group_of(world, 2)
    cid = conversation.id
    await world.send(leaver, conversation, "before")
    async with world.db.connection_transaction() as connection:
        repository = MessagingRepository(connection)
        await repository.members_changed(cid)  # takes the lock
        assert await repository.remove_member(cid, leaver.user_id)
        waiting = asyncio.create_task(world.service.send(leaver, cid, "late", text="after"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # blocked behind the removal
    with pytest.raises(NotFound):
        await waiting
    assert (await state(world, cid))["seqs"] == [1]


async def test_removed_member_stops_receiving_at_once(make_world: MakeWorld) -> None:
    """Two services on one database, as two processes: the one that sends has the list
    cached; the other removes a member; the very next message skips them."""
    sender_side = await make_world()
    other_side = await make_world()
    conversation, (owner, stays, leaves) = await group_of(sender_side, 3)
    await sender_side.send(owner, conversation, "one")
    everyone = {owner.user_id, stays.user_id, leaves.user_id}
    assert set(sender_side.events.named("message:new")[-1][0]) == everyone

    await other_side.service.remove_member(owner, conversation.id, leaves.user_id)
    await sender_side.send(owner, conversation, "two")
    assert set(sender_side.events.named("message:new")[-1][0]) == {owner.user_id, stays.user_id}
    with pytest.raises(NotFound):
        await sender_side.service.send(leaves, conversation.id, "c-1", text="still here?")

    newcomer = await other_side.user()
    await other_side.service.add_members(owner, conversation.id, [newcomer.user_id])
    await sender_side.send(stays, conversation, "three")
    assert set(sender_side.events.named("message:new")[-1][0]) == {
        owner.user_id, stays.user_id, newcomer.user_id
    }  # fmt: skip
    async with sender_side.db.sessions() as session:
        assert await session.scalar(
            select(func.count()).where(MsgMessage.conversation_id == conversation.id)
        ) == 3  # fmt: skip


async def test_a_member_list_that_cannot_be_read_fails_the_send_not_the_store(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push needs the members; when they cannot be read the send fails, but its
    message is stored, and a retry of its client id answers it without storing twice."""
    conversation, (a, _) = await group_of(world, 2)
    world.service.member_lists = MemberLists()  # nothing cached: the store must read them

    async def unreadable(repository: SendRepository, conversation_id: str) -> Any:
        raise ConnectionError("database unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(SendRepository, "members_with_version", unreadable)
        failed = await asyncio.gather(
            world.service.send(a, conversation.id, "m-1", text="hi"), return_exceptions=True
        )
        assert [type(error) for error in failed] == [ConnectionError]
        del failed  # kept, its traceback would hold the database past the test's loop
    assert world.events.named("message:new") == []  # not pushed
    again = await world.service.send(a, conversation.id, "m-1", text="hi")
    assert (again.created, again.message.seq) == (False, 1)
    assert (await state(world, conversation.id))["seqs"] == [1]
