"""Setup of bench/messaging_bench.py: conversations over REST, a throwaway PostgreSQL database."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import httpx
import psycopg

from agora.db.migrate import upgrade
from bench.publications_bench import PG_DSN, sqlalchemy_url
from bench.social_bench import Target


def api(target: Target, user: int) -> httpx.Client:
    headers = {"Authorization": f"Bearer {target.tokens[user]}"}
    return httpx.Client(base_url=target.base, headers=headers, timeout=30)


def conversations(target: Target, members: int) -> tuple[str, str]:
    """A group of `members` (owner: user 0) and a direct conversation of users 0 and 1."""
    with api(target, 0) as http:
        group = http.post(
            "/api/v1/conversations",
            json={"kind": "group", "title": "bench", "members": target.user_ids[1:members]},
        )
        group.raise_for_status()
        direct = http.post(
            "/api/v1/conversations", json={"kind": "direct", "user_id": target.user_ids[1]}
        )
        direct.raise_for_status()
        return str(group.json()["id"]), str(direct.json()["id"])


def last_seq(target: Target, conversation_id: str) -> int:
    with api(target, 0) as http:
        answer = http.get(f"/api/v1/conversations/{conversation_id}")
        answer.raise_for_status()
        return int(answer.json()["last_seq"])


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A migrated throwaway database (its SQLAlchemy URL), dropped at the end."""
    database = f"agora_bench_msg_{secrets.token_hex(4)}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        upgrade(sqlalchemy_url(database))
        yield sqlalchemy_url(database)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


# --- rows -----------------------------------------------------------------------------------
