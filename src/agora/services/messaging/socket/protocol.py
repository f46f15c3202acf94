"""The messaging socket's frames: Phoenix-style JSON objects (docs/messaging.md §3).

    client  {"topic": "conversation:7", "event": "message:send", "payload": {...}, "ref": "12"}
    reply   {"topic": "conversation:7", "event": "phx_reply",
             "payload": {"status": "ok" | "error", "response": {...}}, "ref": "12"}
    push    {"topic": "user:42", "event": "message:new", "payload": {...}, "ref": null}

Error responses carry what a REST client would get: `reason`, `status` (the HTTP
status of the same refusal), `fields` for a 422 and `retry_after` for a 429.
"""

from __future__ import annotations

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


class BadRequest(AgoraError):
    """A request the socket does not know (unknown topic or event, topic not joined)."""

    status_code = 400


class BadFrame(Exception):
    """A frame that cannot be read as a request: an error reply (400), the socket stays."""

    def __init__(self, message: str, topic: str = SYSTEM_TOPIC, ref: Ref = None) -> None:
        super().__init__(message)
        self.message = message
        self.topic = topic
        self.ref = ref


def _ref_of(value: object) -> Ref:
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
    ref = _ref_of(frame.get("ref"))
    if ref is None and frame.get("ref") is not None:
        raise BadFrame(f"ref must be a string of at most {MAX_REF_CHARS} characters or a number")
    topic = frame.get("topic")
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_CHARS:
        raise BadFrame("Invalid topic", ref=ref)
    event = frame.get("event")
    if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_CHARS:
        raise BadFrame("Invalid event", topic, ref)
    payload = frame.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadFrame("payload must be an object", topic, ref)
    return Request(topic, event, payload, ref)


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
