"""Checks of what callers send, shared by the messaging service's methods.

Each raises the domain error the caller should get: ids of things that cannot exist
are `NotFound` (as unknown ones are), malformed fields are `Invalid` with the field's
name as REST and the socket show it.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

from agora.core.errors import Invalid, NotFound

CONVERSATION_NOT_FOUND = "Conversation not found"
MESSAGE_NOT_FOUND = "Message not found"
MEDIA_NOT_FOUND = "Media not found"
MAX_PAGE = 100

ENTITY_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
USER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def conversation_id(value: object) -> str:
    if not isinstance(value, str) or ENTITY_ID.fullmatch(value) is None:
        raise NotFound(CONVERSATION_NOT_FOUND)
    return value


def message_id(value: object) -> str:
    if not isinstance(value, str) or ENTITY_ID.fullmatch(value) is None:
        raise NotFound(MESSAGE_NOT_FOUND)
    return value


def is_entity_id(value: object) -> bool:
    return isinstance(value, str) and ENTITY_ID.fullmatch(value) is not None


def is_client_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_ID.fullmatch(value) is not None


def client_id(value: object) -> str:
    if not isinstance(value, str) or not is_client_id(value):
        raise Invalid("client_id", "client_id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    return value


def user_ids(field: str, values: object) -> list[str]:
    """Distinct user ids, in the order given."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise Invalid(field, "Expected a list of user ids")
    for value in values:
        user_id(field, value)
    return list(dict.fromkeys(values))


def user_id(field: str, value: object) -> str:
    if not isinstance(value, str) or USER_ID.fullmatch(value) is None:
        raise Invalid(field, "Invalid user id")
    return value


def limit(value: object, field: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise Invalid(field, f"{field} must be between 1 and {MAX_PAGE}")
    return value


def seq(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(field, f"{field} must be an integer >= 0")
    return value


def encode_cursor(last_activity_at: datetime, last_id: str) -> str:
    """Opaque to clients: where a listing of conversations goes on."""
    micros = (last_activity_at - EPOCH) // MICROSECOND
    return base64.urlsafe_b64encode(f"{micros}.{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros, last_id = raw.split(".", 1)
        at = EPOCH + int(micros) * MICROSECOND
    except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise Invalid("cursor", "Invalid cursor") from None
    if not is_entity_id(last_id) or not micros.isdigit():
        raise Invalid("cursor", "Invalid cursor")
    return at, last_id
