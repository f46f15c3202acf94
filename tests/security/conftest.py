"""The whole attack suite runs with its logs watched: after every test, no captured
log line (message, fields or traceback) may hold a value that is a secret in the test
fixtures (issue 11 §4: a NUL byte used to put a password hash in a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.support.settings import TEST_SECRET
from tests.support.users import PASSWORD

# What must never be logged: the HS256 secret, the users' password, any argon2 hash (its
# prefix is in every one), any private key.
SECRETS = {
    "the JWT secret": TEST_SECRET,
    "a password": PASSWORD,
    "a password hash": "$argon2id$",
    "a private key": "PRIVATE KEY-----",
}


def leaks(records: list[logging.LogRecord], text: str) -> list[str]:
    """The secrets found in `text` and in the records' own fields (`extra=`)."""
    fields = " ".join(str(vars(record)) for record in records)
    return [name for name, value in SECRETS.items() if value in text or value in fields]


@pytest.fixture(autouse=True)
def no_secret_in_any_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)  # every line a deployment keeps (INFO and up)
    yield
    found = leaks(caplog.records, caplog.text)
    assert not found, f"logged during the test: {', '.join(found)}"
