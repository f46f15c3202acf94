"""`runtime.websocket_protocol.text_frame`: the frames written past `websockets` are
byte for byte the ones `websockets` itself would send, at every length boundary."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from agora.runtime.websocket_protocol import text_frame


def by_websockets(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_match_websockets_at_every_length(size: int) -> None:
    text = "x" * size
    assert text_frame(text) == by_websockets(text)


def test_non_ascii_text_is_framed_at_its_utf8_length() -> None:
    text = "é😀" * 40  # 240 bytes in UTF-8, 80 characters: a 16-bit length
    assert text_frame(text) == by_websockets(text)


def test_the_same_text_object_is_framed_once_and_an_equal_one_again() -> None:
    text = "".join(["fan", "-out"])
    first = text_frame(text)
    assert text_frame(text) is first  # the next socket of the same fan-out
    other = "".join(["fan", "-ou", "t"])
    assert other == text and other is not text
    assert text_frame(other) == first and text_frame(other) is not first
    assert text_frame("something else") == by_websockets("something else")
