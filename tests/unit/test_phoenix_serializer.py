"""Phoenix's two serializers on the messaging socket (services/messaging/socket/serializer.py):
the `vsn` a handshake asks for, 2.0.0 frames read and written, join_refs on replies and
pushes, and 1.0.0 frames left exactly as they were (no join_ref, as Phoenix's V1)."""

from __future__ import annotations

import orjson
import pytest

from agora.realtime.codes import SLOW_CONSUMER
from agora.services.messaging.socket import serializer
from agora.services.messaging.socket.protocol import (
    BadFrame,
    ok,
    presence_diff,
    presence_state,
    push,
    push_serialized,
)
from agora.services.messaging.socket.serializer import (
    V1,
    V2,
    PhoenixConnection,
    UnsupportedVersion,
    parse_v2,
    to_v2,
    version_of,
)
from tests.unit.realtime_fakes import Socket, sent


async def phoenix_connection(vsn: str) -> PhoenixConnection:
    return PhoenixConnection(
        await Socket().websocket(),
        user_id="42",
        login="alice",
        session_jti="jti-1",
        session_iat=100,
        ip="127.0.0.1",
        max_queued_bytes=100_000,
        close_grace=0.05,
        vsn=vsn,
    )


def test_vsn_picks_the_serializer_as_phoenix_does() -> None:
    assert version_of(None) == V1  # a Phoenix server's default, and our older clients'
    assert version_of("1.0.0") == V1
    assert version_of("2.0.0") == V2
    assert version_of("2.0.1") == V2  # Phoenix matches "~> 2.0.0"
    for unknown in ("3.0.0", "2.1.0", "2", "", "2.0.x", "1.0.0-rc"):
        with pytest.raises(UnsupportedVersion):
            version_of(unknown)


def test_a_2_0_0_frame_is_read_with_its_join_ref() -> None:
    request = parse_v2('["3", "7", "conversation:c1", "message:send", {"text": "hi"}]')
    assert (request.join_ref, request.ref, request.topic, request.event) == (
        "3",
        "7",
        "conversation:c1",
        "message:send",
    )
    assert request.payload == {"text": "hi"}
    heartbeat = parse_v2('[null, "8", "phoenix", "heartbeat", {}]')
    assert (heartbeat.join_ref, heartbeat.ref) == (None, "8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}', "array"),
        ('["1", "2", "phoenix", "heartbeat"]', "array"),
        ("[1, 2", "Invalid JSON"),
        ('[{"x": 1}, "2", "phoenix", "heartbeat", {}]', "join_ref must be"),
        ('["1", "2", "phoenix", "heartbeat", []]', "payload must be an object"),
    ],
)
def test_a_bad_2_0_0_frame_is_a_bad_frame(text: str, message: str) -> None:
    with pytest.raises(BadFrame) as bad:
        parse_v2(text)
    assert message in bad.value.message


async def test_2_0_0_replies_carry_the_requests_join_ref_and_pushes_the_topics() -> None:
    conn = await phoenix_connection(V2)
    join = parse_v2('["5", "5", "user:42", "phx_join", {}]')
    conn.join_refs["user:42"] = join.join_ref
    conn.answer(ok(join, {"conversations": {}}), join.join_ref)
    conn.send(presence_state("user:42", ["43"]))
    conn.send(push_serialized("user:42", "message:new", '{"seq":1}'))
    conn.send(push("phoenix", "connected", {"user_id": "42"}))  # no join on `phoenix`
    conn.send(push("conversation:c1", "typing", {}))  # a topic not joined: no join_ref
    assert sent(conn) == [
        ["5", "5", "user:42", "phx_reply", {"status": "ok", "response": {"conversations": {}}}],
        ["5", None, "user:42", "presence_state", {"43": {"metas": [{"phx_ref": "43"}]}}],
        ["5", None, "user:42", "message:new", {"seq": 1}],
        [None, None, "phoenix", "connected", {"user_id": "42"}],
        [None, None, "conversation:c1", "typing", {}],
    ]
    # A rejoin: pushes carry the new join_ref (phoenix.js drops those of an older join).
    conn.join_refs["user:42"] = "9"
    conn.send(push_serialized("user:42", "message:new", '{"seq":2}'))
    assert sent(conn) == [["9", None, "user:42", "message:new", {"seq": 2}]]


async def test_one_frame_for_many_2_0_0_devices_keeps_each_ones_join_ref() -> None:
    devices = [await phoenix_connection(V2) for _ in range(3)]
    for index, conn in enumerate(devices):
        conn.join_refs["user:42"] = str(index)
    frame = push_serialized("user:42", "message:new", '{"seq":3}')
    for conn in devices:
        conn.send(frame)
    assert [sent(conn)[0][0] for conn in devices] == ["0", "1", "2"]


async def test_1_0_0_frames_are_sent_as_they_are_built() -> None:
    conn = await phoenix_connection(V1)
    conn.join_refs["user:42"] = "5"
    frame = push_serialized("user:42", "message:new", '{"seq":1}')
    conn.send(frame)
    conn.answer(ok(parse_v2('["5", "6", "user:42", "phx_leave", {}]'), {}), "5")
    assert sent(conn) == [
        {"topic": "user:42", "event": "message:new", "payload": {"seq": 1}, "ref": None},
        {
            "topic": "user:42",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {}},
            "ref": "6",
        },
    ]


async def test_the_closing_error_is_a_phoenix_push_in_2_0_0() -> None:
    v2, v1 = await phoenix_connection(V2), await phoenix_connection(V1)
    assert orjson.loads(v2.closing_frame(SLOW_CONSUMER.message)) == [
        None,
        None,
        "phoenix",
        "error",
        {"message": "Slow consumer"},
    ]
    assert orjson.loads(v1.closing_frame("Slow consumer")) == {
        "type": "error",
        "message": "Slow consumer",
    }


def test_presence_is_in_phoenix_presences_shape() -> None:
    state = orjson.loads(presence_state("conversation:c1", ["43", "42"]))["payload"]
    assert state == {"42": {"metas": [{"phx_ref": "42"}]}, "43": {"metas": [{"phx_ref": "43"}]}}
    diff = orjson.loads(presence_diff("user:42", ["43"], ["44"]))["payload"]
    assert diff == {
        "joins": {"43": {"metas": [{"phx_ref": "43"}]}},
        "leaves": {"44": {"metas": [{"phx_ref": "44"}]}},
    }


PUSH_PAYLOADS = [
    {"body": 'a "quoted", \\ back\\slash,"event":"x","payload":{}', "seq": 7},
    {"body": "héllo ✓ \u2028 \x01", "n": [1.5, -2, None, True], "nested": {"ref": None}},
    {},
]


@pytest.mark.parametrize("payload", PUSH_PAYLOADS)
@pytest.mark.parametrize("topic", ["user:42", "user:a\\b", 'user:"q"', "user:é"])
@pytest.mark.parametrize("join_ref", ["3", 12, None, "a b", 'x"y'])
def test_a_push_in_2_0_0_is_byte_for_byte_the_re_serialized_frame(
    payload: dict[str, object], topic: str, join_ref: str | int | None
) -> None:
    frame = push_serialized(topic, "message:new", orjson.dumps(payload).decode())
    fields = orjson.loads(frame)
    expected = orjson.dumps([join_ref, None, topic, fields["event"], fields["payload"]]).decode()
    assert to_v2(frame, join_ref) == expected


def test_a_fan_out_push_is_cut_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The payload of a push is never read again on its way to a 2.0.0 device."""
    frame = push_serialized("user:42", "message:new", orjson.dumps({"body": "hi"}).decode())

    def no_parsing(text: str) -> object:
        raise AssertionError(f"parsed {text}")

    monkeypatch.setattr(serializer.orjson, "loads", no_parsing)
    assert to_v2(frame, "5") == '["5",null,"user:42","message:new",{"body":"hi"}]'


@pytest.mark.parametrize("topic", ["user:42", "user:a\\b", 'user:"q"', "user:é"])
async def test_a_cut_push_finds_its_topics_join_ref(topic: str) -> None:
    conn = await phoenix_connection(V2)
    conn.join_refs[topic] = "7"
    conn.send(push_serialized(topic, "message:new", '{"seq":1}'))
    assert sent(conn) == [["7", None, topic, "message:new", {"seq": 1}]]
