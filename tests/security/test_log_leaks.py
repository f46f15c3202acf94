"""SQL parameters never reach a log (issue 11 §4), on PostgreSQL, where a NUL byte in a
registered name used to fail the INSERT with a traceback that carried the e-mail and the
argon2 hash. The suite-wide watch (conftest.py) greps every test's logs; this file
proves the watch itself, and `hide_parameters` with a statement that fails on purpose."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from agora.db.engine import Database
from agora.services.auth.models import User
from agora.services.auth.repository import UserRepository
from tests.security.conftest import leaks
from tests.security.support import running_agora
from tests.support.users import PASSWORD, unique_login

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.mark.postgres
async def test_a_failing_statement_carries_no_parameter(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a field that forgot the text policy would do: PostgreSQL refuses the NUL, and
    neither the error nor its logged traceback shows the row's values."""
    db = Database(postgres_url)
    login = unique_login("leak")
    try:
        with pytest.raises(DBAPIError) as caught:
            async with db.transaction() as session:
                await UserRepository(session).add(
                    User(login=login, login_key=login, email=f"{login}@secret.example",
                         email_key=f"{login}@secret.example", name="a\x00b", password_hash=HASH)
                )  # fmt: skip
    finally:
        await db.engine.dispose()
    written = "".join(traceback.format_exception(caught.value))
    assert "parameters hidden" in written
    assert HASH not in written and "@secret.example" not in written
    logging.getLogger("agora.web").error("unhandled error", exc_info=caught.value)
    assert HASH not in caplog.text


def test_the_watch_sees_a_secret_in_a_message_a_field_or_a_traceback() -> None:
    def record(**extra: object) -> logging.LogRecord:
        made = logging.LogRecord("t", logging.ERROR, __file__, 1, "msg %s", ("x",), None)
        made.__dict__.update(extra)
        return made

    assert leaks([], f"login failed for {PASSWORD}") == ["a password"]
    assert leaks([record(audit={"hash": HASH})], "") == ["a password hash"]
    assert leaks([record()], f"Traceback ...\n[parameters: ('{HASH}',)]") == ["a password hash"]
    assert leaks([record()], "nothing here") == []


async def test_representative_attacks_on_postgresql_log_no_secret(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NUL and other controls in every account field, on the real database, logs
    watched at INFO (the autouse watch then checks them once more)."""
    async with running_agora(tmp_path, database_url=postgres_url) as agora:
        client: httpx.AsyncClient = agora.client
        login = unique_login("atk")
        body = {"login": login, "password": PASSWORD, "email": f"{login}@x.example", "name": "n"}
        assert (await client.post("/auth/api/register", json=body)).status_code == 201
        for field in ("name", "login", "email"):
            for control in ("\x00", "\x1b[31m", "\u202e"):
                attack = {**body, field: body[field] + control}
                answer = await client.post("/auth/api/register", json=attack)
                assert answer.status_code == 422, answer.text
        for attempt in (f"{login}\x00", f"{login}\x00' OR '1'='1", "\x00" * 300):
            answer = await client.post(
                "/auth/api/login", json={"login": attempt, "password": PASSWORD}
            )
            assert answer.status_code == 422, answer.text
    assert leaks(caplog.records, caplog.text) == []
