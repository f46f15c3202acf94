"""The Flask baseline of `GET /api/publications`: the same work, written the classic way.

Per request, as such a service usually does it: the classic `@token_required` (a PyJWT
decode per request, the same checks as `bench.flask_app`), a Redis GET of `user:<id>`
(403 unless it says connected), then the page query of
`agora.services.publications.repository.PublicationPages.page` as plain SQL on a
psycopg 3 connection, answered in the same JSON shape as Agora's route.

It is a fair baseline, not a strawman: one database connection and one Redis client per
worker, reused (a sync worker serves one request at a time), and psycopg prepares the
statement on the server after its fifth run (its default `prepare_threshold`).
With AGORA_BENCH_FLASK_SQL=sqlalchemy the same statement goes through a SQLAlchemy
Session instead (a transaction per request, as a Flask-SQLAlchemy app has).
It does less than Agora: no revocation lookup, no TTL refresh, no activity write,
no fallback to the database when the cache misses.

Served by bench.publications_bench with gunicorn, 2 sync workers; configured by:
AGORA_JWT_SECRET / _ISSUER / _AUDIENCE, AGORA_BENCH_PG_DSN (libpq form), AGORA_REDIS_URL,
AGORA_REDIS_NAMESPACE.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from flask import Flask, g, jsonify, request
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from agora.services.publications.schemas import encode_cursor
from bench.flask_app import token_required

PATH = "/api/publications"
PG_DSN = os.environ.get("AGORA_BENCH_PG_DSN", "")
REDIS_URL = os.environ.get("AGORA_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("AGORA_REDIS_NAMESPACE", "")
DEFAULT_LIMIT = 20

# What SQLAlchemy compiles `PublicationPages.page(user_id, None, limit + 1)` to
# (the service asks one row more than the page, to know whether a next page exists).
PAGE_SQL = (
    "SELECT publications.id, publications.title, publications.body, "
    "publications.created_at, publications.updated_at FROM publications "
    "WHERE publications.user_id = %s ORDER BY publications.id DESC LIMIT %s"
)

# "psycopg" (default): the statement on a plain psycopg connection in autocommit.
# "sqlalchemy": the same statement through a SQLAlchemy Session on psycopg, which opens
# a transaction per request (BEGIN ... ROLLBACK), as a Flask-SQLAlchemy app would.
SQL_LAYER = os.environ.get("AGORA_BENCH_FLASK_SQL", "psycopg")
PAGE_STATEMENT = text(PAGE_SQL.replace("%s", ":user_id", 1).replace("%s", ":limit", 1))

app = Flask("bench-flask-publications")
# Created lazily in each worker (gunicorn forks after import): a connection is not
# something to share across a fork.
_connections: dict[str, Any] = {}


def database() -> psycopg.Connection[Any]:
    connection = _connections.get("pg")
    if connection is None or connection.closed:
        connection = psycopg.connect(PG_DSN, autocommit=True, options="-c TimeZone=UTC")
        _connections["pg"] = connection
    return connection


def sessions() -> Session:
    factory = _connections.get("sessions")
    if factory is None:
        engine = create_engine(
            PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1),
            pool_size=1,
            connect_args={"options": "-c TimeZone=UTC"},
        )
        factory = _connections["sessions"] = sessionmaker(engine)
    session: Session = factory()
    return session


def cache() -> redis.Redis:
    client = _connections.get("redis")
    if client is None:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1.0)
        _connections["redis"] = client
    return client


def forbidden() -> Any:
    response = jsonify(error="Forbidden")
    response.status_code = 403
    return response


def is_connected(user_id: str) -> bool:
    try:
        raw = cache().get(f"{NAMESPACE}user:{user_id}")
    except redis.RedisError:
        return False
    if raw is None:
        return False
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("status") == "connected"


def timestamp(value: datetime) -> str:
    # Agora's route writes datetimes with orjson's OPT_UTC_Z: ISO 8601 ending in "Z".
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@app.get(PATH)
@token_required
def list_publications() -> Any:
    user_id = g.current_user["sub"]
    if not is_connected(user_id):
        return forbidden()
    limit = request.args.get("limit", DEFAULT_LIMIT, type=int)
    if SQL_LAYER == "sqlalchemy":
        with sessions() as session:  # a transaction per request, as Flask-SQLAlchemy does
            rows = session.execute(PAGE_STATEMENT, {"user_id": user_id, "limit": limit + 1}).all()
    else:
        with database().cursor() as cursor:
            cursor.execute(PAGE_SQL, (user_id, limit + 1))
            rows = cursor.fetchall()
    shown = rows[:limit]
    publications = [
        {
            "id": str(row[0]),
            "title": row[1],
            "body": row[2],
            "created_at": timestamp(row[3]),
            "updated_at": timestamp(row[4]),
        }
        for row in shown
    ]
    # 10 rows against a page of 20: never a next page in the benchmark, but answered
    # like Agora would (its cursor is the same base64 of "p:<id>").
    next_cursor = encode_cursor(shown[-1][0]) if len(rows) > limit else None
    return jsonify(publications=publications, next_cursor=next_cursor)
