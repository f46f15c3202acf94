"""A connection on a server that writes frames at once (`connection.WRITE_FRAMES`): a
frame with nothing queued goes at once, with no task; while the transport does not
take frames (paused), they queue behind a writer task, which sends what piled up in
batches once it does, with the same order, bounds and closes."""

from __future__ import annotations

import asyncio

from agora.realtime.codes import SESSION_ENDED, SLOW_CONSUMER
from agora.realtime.connection import WRITE_BATCH_BYTES
from tests.unit.realtime_fakes import Socket, connection


def frame(n: int, pad: int = 0) -> str:
    return f'{{"n": {n}, "pad": "{"x" * pad}"}}'


def numbers(channel: Socket) -> list[int]:
    return [text["n"] for text in channel.texts()]


async def test_a_frame_with_nothing_queued_goes_at_once_without_a_task() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    for n in range(3):
        assert conn.send(frame(n))
    assert channel.batches == [[frame(0)], [frame(1)], [frame(2)]]
    assert conn._writer is None and conn._queue is None and conn.queued_bytes == 0


async def test_a_paused_transport_queues_behind_a_writer_that_sends_in_order() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    conn.send(frame(1))
    channel.paused = True  # over the transport's high-water mark: no direct write
    conn.send(frame(2))
    writer = conn._writer
    assert writer is not None and conn.queued_bytes > 0
    channel.paused = False  # taken again, but frame 2 waits: 3 and 4 go behind it
    conn.send(frame(3))
    conn.send(frame(4))
    assert channel.batches == [[frame(1)]]
    await asyncio.wait_for(writer, 1)
    assert channel.batches == [[frame(1)], [frame(2), frame(3), frame(4)]]
    assert conn._writer is None and conn.queued_bytes == 0
    conn.send(frame(5))  # nothing queued any more: at once again
    assert channel.batches[-1] == [frame(5)]
    assert numbers(channel) == [1, 2, 3, 4, 5]


async def test_the_writer_sends_with_the_asgi_send_while_paused() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    channel.paused = True  # the fake's ASGI send returns at once: the transport "resumed"
    for n in range(3):
        conn.send(frame(n))
    assert conn._writer is not None
    await asyncio.wait_for(conn._writer, 1)
    assert channel.batches == [] and numbers(channel) == [0, 1, 2]


async def test_one_write_takes_at_most_a_batch() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel, limit=4 * WRITE_BATCH_BYTES)
    pad = WRITE_BATCH_BYTES // 4
    channel.paused = True
    for n in range(10):  # about 2.5 batches' worth, queued
        assert conn.send(frame(n, pad))
    channel.paused = False
    assert conn._writer is not None
    await asyncio.wait_for(conn._writer, 1)
    assert [len(batch) for batch in channel.batches] == [3, 3, 3, 1]
    assert all(sum(map(len, batch)) <= WRITE_BATCH_BYTES for batch in channel.batches)
    assert numbers(channel) == list(range(10)) and conn.queued_bytes == 0


async def test_a_close_drops_what_is_queued() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    conn.send(frame(1))
    channel.paused = True
    conn.send(frame(2))
    conn.close(SESSION_ENDED)
    channel.paused = False
    await asyncio.wait_for(conn.finish(), 1)
    assert channel.texts() == [{"n": 1, "pad": ""}, {"type": "error", "message": "Session ended"}]
    assert channel.close_code() == 4410


async def test_a_restart_sends_the_queue_before_its_close() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    channel.paused = True
    conn.send(frame(1))
    conn.send(frame(2))
    conn.restart()  # the reader saw the shutdown
    assert not conn.send(frame(3))
    channel.paused = False
    await asyncio.wait_for(conn.finish(), 1)
    texts = channel.texts()
    assert [text.get("n") for text in texts[:2]] == [1, 2]
    assert texts[2]["type"] == "error" and channel.close_code() == 1012


async def test_a_client_that_reads_nothing_is_still_a_slow_consumer() -> None:
    channel = Socket(direct=True, stalled=True)  # paused, and the ASGI send never returns
    conn = await connection(channel, limit=100, grace=0.05)
    assert conn.send("x" * 60)
    await asyncio.sleep(0.01)  # the writer took it and waits for the transport
    assert conn.send("y" * 60) and conn.send("z" * 40)
    assert not conn.send("w")
    assert conn.closing is SLOW_CONSUMER and conn.queued_bytes == 0
    await asyncio.wait_for(conn.finish(), 1)
    await conn.stop_writer()
    assert channel.batches == [] and channel.close_code() is None


async def test_frames_sent_soon_leave_in_one_write_at_the_end_of_the_turn() -> None:
    """A fan-out's frames (`soon`) wait for the end of the loop's turn and leave in one
    write; a frame sent meanwhile without `soon` goes behind them, not before."""
    channel = Socket(direct=True)
    conn = await connection(channel)
    assert conn.send(frame(1), soon=True)
    assert conn.send(frame(2), soon=True)
    assert conn.send(frame(3))  # an answer: keeps its place after the pushes
    assert channel.batches == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert channel.batches == [[frame(1), frame(2), frame(3)]]
    assert conn._writer is None and conn.queued_bytes == 0
    conn.send(frame(4))  # nothing waits: at once, as before
    assert channel.batches[-1] == [frame(4)]


async def test_frames_sent_soon_queue_when_the_transport_does_not_take_them() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel, limit=4 * WRITE_BATCH_BYTES)
    pad = WRITE_BATCH_BYTES // 3
    for n in range(4):  # more than a batch: queued, and sent by the writer in batches
        conn.send(frame(n, pad), soon=True)
    await asyncio.sleep(0)
    assert conn._writer is not None
    await asyncio.wait_for(conn._writer, 1)
    assert numbers(channel) == [0, 1, 2, 3]
    assert all(sum(map(len, batch)) <= WRITE_BATCH_BYTES for batch in channel.batches)
    channel.paused = True
    conn.send(frame(5), soon=True)
    await asyncio.sleep(0)
    assert conn._writer is not None and conn.queued_bytes > 0  # behind a writer


async def test_a_close_drops_frames_waiting_for_the_end_of_the_turn() -> None:
    channel = Socket(direct=True)
    conn = await connection(channel)
    conn.send(frame(1), soon=True)
    conn.close(SESSION_ENDED)
    await asyncio.sleep(0)
    assert channel.batches == [] and not conn.send(frame(2), soon=True)
