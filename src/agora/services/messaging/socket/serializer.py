"""Phoenix's two JSON serializers, chosen per socket by the `vsn` query parameter.

    vsn=2.0.0  [join_ref, ref, topic, event, payload]        (phoenix.js's default)
    vsn=1.0.0  {"topic", "event", "payload", "ref"}          (also when vsn is absent,
                                                              as a Phoenix server does)

The socket's code builds every frame in the 1.0.0 shape (`protocol.push`, `reply`,
and the fan-out's frames, serialized once for every device of a user). A 2.0.0 socket
re-encodes each frame as it is queued (`PhoenixConnection.send`): replies carry the
join_ref of the request they answer, pushes the join_ref of the topic's current join
(phoenix.js drops a push whose join_ref is not its channel's: it is from an earlier
join). As in Phoenix, 1.0.0 frames never carry a join_ref.

A frame the fan-out serialized once is re-encoded once for all the 2.0.0 devices it is
queued on (`_parsed` remembers the last one): only the join_ref differs between them. A
push is cut at its keys rather than parsed (`_push_tail`): the payload is never read.
"""

from __future__ import annotations

from typing import Any

import orjson

from agora.realtime.connection import Connection, error_frame
from agora.services.messaging.socket.protocol import (
    SYSTEM_TOPIC,
    BadFrame,
    Ref,
    Request,
    parse,
    request_of,
)
from agora.services.messaging.socket.send_window import SendWindow

V1 = "1.0.0"
V2 = "2.0.0"
SUPPORTED = {"1.0": V1, "2.0": V2}  # Phoenix accepts "~> 1.0.0" / "~> 2.0.0"


class UnsupportedVersion(Exception):
    """A `vsn` this server does not speak: the handshake is refused (403, as Phoenix)."""


def version_of(vsn: str | None) -> str:
    """The serializer version a `vsn` query parameter asks for (absent: 1.0.0)."""
    if vsn is None:
        return V1
    major_minor = ".".join(vsn.split(".")[:2])
    version = SUPPORTED.get(major_minor)
    if version is None or not all(part.isdigit() for part in vsn.split(".")):
        raise UnsupportedVersion(vsn)
    return version


def parse_v2(text: str) -> Request:
    """A 2.0.0 frame: `[join_ref, ref, topic, event, payload]`."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadFrame("Invalid JSON") from None
    if not isinstance(frame, list) or len(frame) != 5:
        raise BadFrame("A frame is a JSON array [join_ref, ref, topic, event, payload]")
    join_ref, ref, topic, event, payload = frame
    return request_of(topic, event, payload, ref, join_ref)


_parsed: tuple[str, str, str] | None = None  # the last frame re-encoded

# A push as `push_serialized` lays it out: {"topic":"...","event":"...","payload":...,"ref":null}
_PUSH_HEAD, _EVENT_KEY = '{"topic":"', '","event":"'
_PAYLOAD_KEY, _PUSH_END = ',"payload":', ',"ref":null}'


def _push_tail(frame: str) -> tuple[str, str] | None:
    """A push laid out as `push_serialized` (and orjson) writes it, cut into its topic
    and `null,topic,event,payload]` without reading the payload; None for any other
    frame, which is parsed instead. Topic and event must have no quote or backslash
    (each ends at the first quote), and be followed by the next key: then the cut is the
    frame's own text, byte for byte what re-serializing its parsed fields would give."""
    if not (frame.startswith(_PUSH_HEAD) and frame.endswith(_PUSH_END)):
        return None
    topic_end = frame.find('"', len(_PUSH_HEAD))
    if topic_end < 0 or not frame.startswith(_EVENT_KEY, topic_end):
        return None
    event_start = topic_end + len(_EVENT_KEY)
    event_end = frame.find('"', event_start)
    if event_end < 0 or not frame.startswith(_PAYLOAD_KEY, event_end + 1):
        return None
    topic, event = frame[len(_PUSH_HEAD) : topic_end], frame[event_start:event_end]
    if "\\" in topic or "\\" in event:
        return None
    payload_json = frame[event_end + 1 + len(_PAYLOAD_KEY) : -len(_PUSH_END)]
    return topic, f'null,"{topic}","{event}",{payload_json}]'


def _tail(frame: str) -> tuple[str, str]:
    """A 1.0.0 frame's topic, and its `ref, topic, event, payload]` serialized.

    A fan-out frame is the same text for every device of its user (and a message's
    frames differ only in their topic): it is cut, not parsed, and remembered for the
    next device (`_parsed`)."""
    global _parsed
    if _parsed is not None and _parsed[0] is frame:
        return _parsed[1], _parsed[2]
    push = _push_tail(frame)
    if push is not None:
        topic, tail = push
    else:
        fields = orjson.loads(frame)
        if "topic" not in fields:  # the endpoint's `{"type": "error", "message"}`
            fields = {
                "topic": SYSTEM_TOPIC,
                "event": "error",
                "payload": {"message": fields.get("message")},
                "ref": None,
            }
        topic = fields["topic"]
        body = orjson.dumps([fields["ref"], topic, fields["event"], fields["payload"]])
        tail = body[1:].decode()
    _parsed = (frame, topic, tail)
    return topic, tail


def _join_ref_json(join_ref: Ref) -> str:
    if join_ref is None:
        return "null"
    if isinstance(join_ref, str) and join_ref.isalnum() and join_ref.isascii():
        return f'"{join_ref}"'  # what orjson writes for it, without the call
    return orjson.dumps(join_ref).decode()


def to_v2(frame: str, join_ref: Ref) -> str:
    return f"[{_join_ref_json(join_ref)},{_tail(frame)[1]}"


class PhoenixConnection(Connection):
    """A messaging socket: its serializer, the join_ref of each topic it joined, and
    its sends in flight (from its first send on)."""

    __slots__ = ("join_refs", "sends", "vsn")

    def __init__(self, *args: Any, vsn: str = V1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vsn = vsn
        self.join_refs: dict[str, Ref] = {}
        self.sends: SendWindow | None = None

    @property
    def v2(self) -> bool:
        return self.vsn == V2

    def parse(self, text: str) -> Request:
        return parse_v2(text) if self.v2 else parse(text)

    def send(self, frame: str, *, soon: bool = False) -> bool:
        if self.v2:
            topic, tail = _tail(frame)
            frame = f"[{_join_ref_json(self.join_refs.get(topic))},{tail}"
        return super().send(frame, soon=soon)

    def answer(self, frame: str, join_ref: Ref) -> bool:
        """Queue `frame`, a reply to a request that carried `join_ref` (2.0.0 echoes it:
        the reply to a join, failed or not, belongs to that join)."""
        return super().send(to_v2(frame, join_ref) if self.v2 else frame)

    def closing_frame(self, message: str) -> str:
        frame = error_frame(message)
        return to_v2(frame, None) if self.v2 else frame


__all__ = [
    "V1",
    "V2",
    "PhoenixConnection",
    "UnsupportedVersion",
    "parse_v2",
    "to_v2",
    "version_of",
]
