"""The storage floor of a message send: bare asyncpg, Agora's tables, the same guarantees.

    .venv/bin/python -m bench.messaging_storage_floor [--seconds 10] [--senders 8]

What the messaging service's send path cannot beat on this machine's PostgreSQL: one
statement per message on the migrated `msg_*` tables (a throwaway database, dropped at
the end) that

- advances the conversation's `last_seq` and `last_version` (the row lock orders the
  conversation's messages),
- inserts the message idempotently on (conversation, author, client id): a repeated
  client id answers the stored seq and stores nothing more,
- moves the sender's cursor (`msg_members.read_seq`) to its own message,

sent by `--senders` concurrent clients (each its own connection of one asyncpg pool)
into one 50-member conversation, as fast as they can for `--seconds`. It reports
messages/s and this process's CPU per message (the client side: asyncpg, the loop),
and checks the end state: as many rows as sends, seqs 1..n with no gap, `last_seq` = n,
and a resend of one client id stores nothing. Issue 13 asks the send path for at least
0.5x the lower of this and the bare fan-out (`bench.messaging_bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.charts import after_run
from bench.harness import machine, write_results
from bench.messaging_setup import postgres_database

MEMBERS = 50

# One statement, one round trip. A repeated client id finds its row in `stored` and
# neither advances the seq nor inserts (`bump` runs only without it); a race between two
# sends of one client id is settled by the unique constraint (ON CONFLICT DO NOTHING),
# at the price of one unused seq, which the check below would report as a gap.
SEND = """
WITH stored AS (
    SELECT seq FROM msg_messages
    WHERE conversation_id = $1 AND author_id = $2 AND client_id = $3
), bump AS (
    UPDATE msg_conversations
    SET last_seq = last_seq + 1, last_version = last_version + 1, last_activity_at = $6
    WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM stored)
    RETURNING last_seq, last_version
), inserted AS (
    INSERT INTO msg_messages
        (id, conversation_id, seq, version, author_id, client_id, kind, text, created_at)
    SELECT $4, $1, last_seq, last_version, $2, $3, 'text', $5, $6 FROM bump
    ON CONFLICT DO NOTHING
    RETURNING seq
), moved AS (
    UPDATE msg_members SET read_seq = inserted.seq FROM inserted
    WHERE conversation_id = $1 AND user_id = $2 AND read_seq < inserted.seq
    RETURNING 1
)
SELECT coalesce((SELECT seq FROM inserted), (SELECT seq FROM stored)) AS seq,
       (SELECT count(*) FROM moved) AS moved
"""


async def seed(pool: asyncpg.Pool, conversation: str, senders: int) -> list[str]:
    now = datetime.now(UTC)
    users = [f"floor-{n}" for n in range(MEMBERS)]
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO msg_conversations (id, kind, title, owner_id, created_at,"
            " last_activity_at, last_seq, last_version) VALUES ($1, 'group', 'floor', $2,"
            " $3, $3, 0, 0)",
            conversation, users[0], now,
        )  # fmt: skip
        await connection.executemany(
            "INSERT INTO msg_members (conversation_id, user_id, joined_at, read_seq)"
            " VALUES ($1, $2, $3, 0)",
            [(conversation, user, now) for user in users],
        )
    return users[:senders]


async def run(dsn: str, args: argparse.Namespace) -> dict[str, object]:
    pool = await asyncpg.create_pool(dsn, min_size=args.senders, max_size=args.senders)
    conversation = secrets.token_hex(8)
    try:
        senders = await seed(pool, conversation, args.senders)
        sent = [0] * len(senders)
        deadline = time.monotonic() + args.seconds

        async def sender(index: int, author: str) -> None:
            async with pool.acquire() as connection:
                statement = await connection.prepare(SEND)
                while time.monotonic() < deadline:
                    now = datetime.now(UTC)
                    client_id = f"{author}-{sent[index]}"
                    await statement.fetchrow(
                        conversation, author, client_id, secrets.token_hex(8),
                        "a message of ordinary length, about sixty characters long", now,
                    )  # fmt: skip
                    sent[index] += 1

        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(*(sender(i, author) for i, author in enumerate(senders)))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        total = sum(sent)
        async with pool.acquire() as connection:
            rows = await connection.fetchval(
                "SELECT count(*) FROM msg_messages WHERE conversation_id = $1", conversation
            )
            seqs = await connection.fetchval(
                "SELECT count(DISTINCT seq) FROM msg_messages WHERE conversation_id = $1"
                " AND seq BETWEEN 1 AND $2",
                conversation, total,
            )  # fmt: skip
            last = await connection.fetchval(
                "SELECT last_seq FROM msg_conversations WHERE id = $1", conversation
            )
            first = await connection.fetchval(
                "SELECT seq FROM msg_messages WHERE conversation_id = $1 AND author_id = $2"
                " AND client_id = $3",
                conversation, senders[0], f"{senders[0]}-0",
            )  # fmt: skip
            again = await connection.fetchrow(
                SEND, conversation, senders[0], f"{senders[0]}-0", secrets.token_hex(8),
                "resent", datetime.now(UTC),
            )  # fmt: skip
            after = await connection.fetchval(
                "SELECT count(*) FROM msg_messages WHERE conversation_id = $1", conversation
            )
        ok = rows == total == seqs == last and again["seq"] == first and after == total
        if not ok:
            raise SystemExit(
                f"wrong end state: {total} sends, {rows} rows, {seqs} seqs, last_seq {last}, "
                f"resend seq {again['seq']} (stored: {first}), rows after resend {after}"
            )
        return {
            "senders": args.senders,
            "messages": total,
            "seconds": round(wall, 2),
            "messages_per_s": round(total / wall, 1),
            "client_cpu_us_per_message": round(cpu / total * 1e6, 1),
        }
    finally:
        await pool.close()


def measure(database_url: str, seconds: float = 10, senders: int = 8) -> dict[str, object]:
    """One run on an existing migrated database (its own conversation): for
    `bench.messaging_bench`, which measures the floor beside the agora-pg rows."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return asyncio.run(run(dsn, argparse.Namespace(seconds=seconds, senders=senders)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messaging_storage_floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--senders", type=int, default=8, help="concurrent connections")
    args = parser.parse_args(argv)
    if not 1 <= args.senders <= MEMBERS:
        parser.error(f"--senders must be 1 to {MEMBERS}")
    with postgres_database() as url:
        result = measure(url, args.seconds, args.senders)
    print(
        f"storage floor: {result['messages_per_s']:,} messages/s, "
        f"{result['client_cpu_us_per_message']} µs client CPU per message "
        f"({result['messages']} messages in {result['seconds']} s, {args.senders} senders)"
    )
    out = write_results("messaging-storage-floor", {
        "benchmark": "messaging-storage-floor",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args), "machine": machine(), **result,
    })  # fmt: skip
    print(f"results: {out}")
    after_run(out)


def describe(floor: dict[str, Any], pg_messages_per_s: float | None) -> str:
    """One line for a run's report: the floor, and agora-pg's share of it when measured."""
    share = (
        f", agora-pg x1 = {pg_messages_per_s / floor['messages_per_s']:.3f}x of it"
        if pg_messages_per_s
        else ""
    )
    return (
        f"storage floor (bare asyncpg, one statement per message, {floor['senders']} senders): "
        f"{floor['messages_per_s']:,} msg/s, {floor['client_cpu_us_per_message']} µs client CPU "
        f"per message{share}"
    )


if __name__ == "__main__":
    main()
