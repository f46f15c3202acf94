"""Parsing user events: any publisher's bare body works; anything unusable is poison."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agora.ports.bus import Delivery, PoisonMessage
from agora.services.publications.repository import UserEvent
from agora.services.publications.status.consumer import parse_event


def delivery(body: object, message_id: str | None = None) -> Delivery:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Delivery(raw, "user.connected", message_id=message_id)


def test_foreign_publisher_bare_body() -> None:
    event = parse_event(
        delivery(
            {
                "event": "connected",
                "user_id": "12345",
                "name": "John Doe",
                "email": "john@example.com",
            }
        )
    )
    assert event == UserEvent("connected", "12345", "John Doe", "john@example.com")


def test_bare_disconnect_has_no_profile_fields() -> None:
    event = parse_event(delivery({"event": "disconnected", "user_id": "12345"}))
    assert event == UserEvent("disconnected", "12345")


def test_auth_service_fields_are_read() -> None:
    event = parse_event(
        delivery(
            {
                "event": "disconnected",
                "user_id": 7,
                "event_id": "e-1",
                "seq": 4,
                "occurred_at": "2026-11-21T10:00:00.5Z",
            },
            message_id="m-1",
        )
    )
    assert event.user_id == "7"  # an integer id is taken as its string
    assert event.dedup_key == "e-1"  # event_id wins over the AMQP message_id
    assert event.seq == 4
    assert event.occurred_at == datetime(2026, 11, 21, 10, 0, 0, 500000, tzinfo=UTC)


def test_message_id_is_the_dedup_key_without_event_id() -> None:
    body = {"event": "connected", "user_id": "1"}
    assert parse_event(delivery(body, message_id="m-9")).dedup_key == "m-9"
    assert parse_event(delivery(body)).dedup_key is None


def test_occurred_at_without_zone_is_utc_and_offsets_are_converted() -> None:
    naive = parse_event(
        delivery({"event": "connected", "user_id": "1", "occurred_at": "2026-11-21T10:00:00"})
    )
    shifted = parse_event(
        delivery({"event": "connected", "user_id": "1", "occurred_at": "2026-11-21T12:00:00+02:00"})
    )
    assert naive.occurred_at == shifted.occurred_at == datetime(2026, 11, 21, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({"event": "exploded", "user_id": "1"}, "unknown event 'exploded'"),
        ({"user_id": "1"}, "unknown event None"),
        ({"event": "connected"}, "missing user_id"),
        ({"event": "connected", "user_id": ""}, "user_id must be"),
        ({"event": "connected", "user_id": "a b"}, "user_id must be"),
        ({"event": "connected", "user_id": "x" * 65}, "user_id must be"),
        ({"event": "connected", "user_id": True}, "user_id must be a string or an integer"),
        ({"event": "connected", "user_id": {"id": 1}}, "user_id must be a string or an integer"),
        ({"event": "connected", "user_id": "1", "name": 5}, "name must be a string"),
        ({"event": "connected", "user_id": "1", "name": "n" * 201}, "name longer than 200"),
        ({"event": "connected", "user_id": "1", "seq": -1}, "seq must be"),
        ({"event": "connected", "user_id": "1", "seq": "later"}, "seq must be"),
        ({"event": "connected", "user_id": "1", "occurred_at": "yesterday"}, "occurred_at"),
        ({"event": "connected", "user_id": "1", "occurred_at": 1700000000}, "occurred_at"),
        ({"event": "connected", "user_id": "1", "event_id": "e" * 129}, "event_id longer"),
        # PostgreSQL refuses NUL in text: such an event would fail every retry.
        ({"event": "connected", "user_id": "1", "name": "a\x00b"}, "name contains a NUL"),
        ({"event": "connected", "user_id": "1", "email": "\x00"}, "email contains a NUL"),
        ({"event": "connected", "user_id": "1", "event_id": "e\x00"}, "event_id contains a NUL"),
    ],
)
def test_poison_messages_carry_their_reason(body: object, reason: str) -> None:
    with pytest.raises(PoisonMessage) as raised:
        parse_event(delivery(body))
    assert reason in str(raised.value)
