"""The messaging socket's frames, as Phoenix Channels has them (docs/messaging.md §3).

Built here in the 1.0.0 (object) shape; `serializer` sends them as 2.0.0 arrays
(`[join_ref, ref, topic, event, payload]`) to the sockets that asked for it.

    client  {"topic": "conversation:7", "event": "message:send", "payload": {...}, "ref": "12"}
    reply   {"topic": "conversation:7", "event": "phx_reply",
             "payload": {"status": "ok" | "error", "response": {...}}, "ref": "12"}
    push    {"topic": "user:42", "event": "message:new", "payload": {...}, "ref": null}

Error responses carry what a REST client would get: `reason`, `status` (the HTTP
status of the same refusal), `fields` for a 422 and `retry_after` for a 429.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from agora.core.errors import AgoraError, Invalid, TooManyRequests

WELCOME = "Welcome to Messaging WebSocket!"
SYSTEM_TOPIC = "phoenix"
MAX_REF_CHARS = 64
MAX_TOPIC_CHARS = 128
MAX_EVENT_CHARS = 64

Ref = str | int | None


@dataclass(frozen=True, slots=True)
class Request:
    topic: str
    event: str
    payload: dict[str, Any]
    ref: Ref
    join_ref: Ref = None  # 2.0.0 (and phoenix.js's 1.0.0) frames name their join


class BadRequest(AgoraError):
    """A request the socket does not know (unknown topic or event, topic not joined)."""

    status_code = 400


class BadFrame(Exception):
    """A frame that cannot be read as a request: an error reply (400), the socket stays."""

    def __init__(
        self, message: str, topic: str = SYSTEM_TOPIC, ref: Ref = None, join_ref: Ref = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.topic = topic
        self.ref = ref
        self.join_ref = join_ref


def ref_of(value: object) -> Ref:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and len(value) <= MAX_REF_CHARS):
        return value
    return None


def parse(text: str) -> Request:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadFrame("Invalid JSON") from None
    if not isinstance(frame, dict):
        raise BadFrame("A frame is a JSON object")
    return request_of(
        frame.get("topic"),
        frame.get("event"),
        frame.get("payload"),
        frame.get("ref"),
        frame.get("join_ref"),
    )


def request_of(
    topic: object, event: object, payload: object, ref: object, join_ref: object
) -> Request:
    """A request from a frame's fields, whichever serializer read them."""
    bad_ref = f"ref must be a string of at most {MAX_REF_CHARS} characters or a number"
    checked_ref = ref_of(ref)
    if checked_ref is None and ref is not None:
        raise BadFrame(bad_ref)
    checked_join_ref = ref_of(join_ref)
    if checked_join_ref is None and join_ref is not None:
        raise BadFrame("join_" + bad_ref, ref=checked_ref)
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_CHARS:
        raise BadFrame("Invalid topic", ref=checked_ref, join_ref=checked_join_ref)
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_CHARS:
        raise BadFrame("Invalid event", topic, checked_ref, checked_join_ref)
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadFrame("payload must be an object", topic, checked_ref, checked_join_ref)
    return Request(topic, event, payload, checked_ref, checked_join_ref)


def push(topic: str, event: str, payload: dict[str, Any]) -> str:
    return orjson.dumps({"topic": topic, "event": event, "payload": payload, "ref": None}).decode()


def push_serialized(topic: str, event: str, payload_json: str) -> str:
    """A push around a payload serialized once for many recipients."""
    return (
        f'{{"topic":{orjson.dumps(topic).decode()},"event":{orjson.dumps(event).decode()},'
        f'"payload":{payload_json},"ref":null}}'
    )


def reply(topic: str, ref: Ref, status: str, response: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "topic": topic,
            "event": "phx_reply",
            "payload": {"status": status, "response": response},
            "ref": ref,
        }
    ).decode()


def ok(request: Request, response: dict[str, Any]) -> str:
    return reply(request.topic, request.ref, "ok", response)


def error_body(error: AgoraError) -> dict[str, Any]:
    """As REST answers the same error (agora.web.errors)."""
    if isinstance(error, Invalid):
        return {
            "reason": "Validation failed",
            "status": error.status_code,
            "fields": {error.field: error.message},
        }
    body: dict[str, Any] = {"reason": error.message, "status": error.status_code}
    if isinstance(error, TooManyRequests):
        body["retry_after"] = error.retry_after
    return body


def failed(request: Request, error: AgoraError) -> str:
    return reply(request.topic, request.ref, "error", error_body(error))


def bad_frame(error: BadFrame) -> str:
    return reply(error.topic, error.ref, "error", {"reason": error.message, "status": 400})


# --- presence, in Phoenix.Presence's shape -----------------------------------------------------
# phoenix.js `Presence` keeps `{key: {metas: [...]}}` and matches leaves to joins by each
# meta's `phx_ref`. Presence here is per user (present while any device is), so each user
# has one meta, whose `phx_ref` is the user id: a leave always names the meta its join
# made, on every instance, and a repeated join replaces it instead of adding one.


def presence_entries(user_ids: Iterable[str]) -> dict[str, Any]:
    return {user_id: {"metas": [{"phx_ref": user_id}]} for user_id in sorted(user_ids)}


def presence_state(topic: str, online: Iterable[str]) -> str:
    return push(topic, "presence_state", presence_entries(online))


def presence_diff(topic: str, joins: Iterable[str], leaves: Iterable[str]) -> str:
    return push(
        topic,
        "presence_diff",
        {"joins": presence_entries(joins), "leaves": presence_entries(leaves)},
    )
