"""The social socket's limits on a real server: frame size, message and connection rates,
slow readers, dead clients, and presence that survives a crashed peer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agora.realtime.presence import PresenceTracker
from agora.services.social.deps import SocialServices
from tests.service.social_harness import (
    WS_PATH,
    Server,
    closed_with,
    open_socket,
    receive,
    receive_until,
    refusal,
    send,
    social_settings,
    start,
    ws_url,
)

pytestmark = pytest.mark.timeout(60)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def social_devices(server: Server, user_id: str) -> int:
    return len(server.social.provided(SocialServices).hub.devices.get(user_id, ()))


async def test_frame_over_the_limit_closes_with_1009(tmp_path: Path) -> None:
    settings = social_settings(tmp_path, ws_max_message_bytes=1024)
    # uvicorn refuses it in the protocol (agora serve passes ws_max_size) ...
    async with start(settings) as server:
        alice = await server.user()
        ws = await alice.socket()
        await ws.send("x" * 2000)
        assert (await closed_with(ws))[0] == 1009
    # ... and the handler checks too, for a server configured with a larger limit.
    async with start(settings, ws_max_size=1 << 20) as server:
        alice = await server.user()
        ws = await alice.socket()
        await send(ws, {"type": "chat", "content": "é" * 600})  # 1200 bytes of UTF-8
        assert await receive(ws) == {"type": "error", "message": "Frame too large"}
        assert await closed_with(ws) == (1009, "Frame too large")


async def test_message_flood_is_blocked_and_the_block_outlives_the_socket(
    tmp_path: Path,
) -> None:
    settings = social_settings(tmp_path, social_messages_per_window=5)
    async with start(settings) as server:
        alice = await server.user()
        ws = await alice.socket()
        for n in range(5):
            await send(ws, {"type": "chat", "content": f"m{n}"})
            assert (await receive(ws))["type"] == "echo"
        await send(ws, {"type": "chat", "content": "one too many"})
        assert await receive(ws) == {"type": "error", "message": "Too many messages"}
        assert await closed_with(ws) == (4429, "Too many messages")
        # A new socket of the same user is still blocked, and that is not a new block.
        again = await alice.socket()
        await send(again, {"type": "chat", "content": "let me in"})
        assert await receive(again) == {"type": "error", "message": "Too many messages"}
        assert (await closed_with(again))[0] == 4429
        blocks = await server.audit_events("social.rate_limited")
        assert [(b["scope"], b["user_id"], b["level"]) for b in blocks] == [
            ("messages", alice.user_id, 1)
        ]


async def test_connections_per_ip_are_limited(tmp_path: Path) -> None:
    settings = social_settings(tmp_path, social_connections_per_ip=3)
    async with start(settings) as server:
        alice = await server.user()
        sockets = [await alice.socket() for _ in range(3)]
        assert await refusal(server.base_url, await alice.ticket()) == (
            {"type": "error", "message": "Too many connections"},
            4429,
        )
        # Refused before the ticket is looked at: not even a missing one is reported.
        assert (await refusal(server.base_url, None))[1] == 4429
        blocks = await server.audit_events("social.rate_limited")
        assert [(b["scope"], b["ip"]) for b in blocks] == [("connections", "127.0.0.1")]
        for ws in sockets:
            await ws.close()


async def test_a_retry_loop_of_refused_tickets_never_locks_the_address_out(
    tmp_path: Path,
) -> None:
    """Only sockets that open count (issue 10 §1): a client looping on its spent ticket,
    as fast as it can, gets the seed's frame and code each time, and its next valid
    ticket still opens; the refusals stay audited."""
    settings = social_settings(tmp_path, social_connections_per_ip=3)
    async with start(settings) as server:
        alice = await server.user()
        spent = await alice.ticket()
        first = await open_socket(server.base_url, spent)
        assert (await receive(first))["type"] == "connected"
        await first.close()
        for _ in range(20):
            assert await refusal(server.base_url, spent) == (
                {"type": "error", "message": "Token already used"},
                4409,
            )
        for _ in range(5):
            assert await refusal(server.base_url, "not-a-ticket") == (
                {"type": "error", "message": "Invalid or expired token"},
                4401,
            )
        ws = await alice.socket()  # past its welcome frame
        await ws.close()
        assert len(await server.audit_events("social.ticket_reused")) == 20
        assert len(await server.audit_events("social.ticket_refused")) == 5
        assert await server.audit_events("social.rate_limited") == []


async def test_slow_reader_is_disconnected_and_memory_stays_bounded(tmp_path: Path) -> None:
    limit = 64 * 1024
    settings = social_settings(
        tmp_path,
        ws_outbound_queue_bytes=limit,
        social_messages_per_window=1_000_000,
        ws_close_grace=0.3,
    )
    async with start(settings) as server:
        slow_user, sender_user, watcher_user = (
            await server.user(),
            await server.user(),
            await server.user(),
        )
        watcher = await watcher_user.socket()
        await send(watcher, {"type": "presence.watch", "users": [slow_user.user_id]})
        await receive(watcher)

        # A client that reads nothing: a tiny receive buffer and no recv() calls.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        host, port = server.base_url.removeprefix("http://").split(":")
        await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
        slow = await connect(
            ws_url(server.base_url, await slow_user.ticket()),
            sock=raw,
            max_queue=1,
            ping_interval=None,
        )
        assert await receive_until(watcher, "presence.join") == {
            "type": "presence.join",
            "userId": slow_user.user_id,
        }

        sender = await sender_user.socket()

        async def drain_acks() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in sender:
                    pass

        acks = asyncio.create_task(drain_acks())
        content = "x" * 4000
        before = rss_bytes()
        pushed = 0
        for _ in range(8000):  # 32 MB for the slow reader
            await send(sender, {"type": "chat", "to": slow_user.user_id, "content": content})
            pushed += len(content)
        grown = rss_bytes() - before

        # The server dropped it, took it offline and recorded why.
        assert await receive_until(watcher, "presence.leave") == {
            "type": "presence.leave",
            "userId": slow_user.user_id,
        }
        assert social_devices(server, slow_user.user_id) == 0
        assert grown < pushed / 4, f"server grew {grown} bytes for {pushed} pushed"
        events: list[dict[str, object]] = []
        async with asyncio.timeout(5):  # stored just after the device went offline
            while not events:
                events = await server.audit_events("social.slow_consumer")
        assert [(e["user_id"], e["limit_bytes"]) for e in events] == [(slow_user.user_id, limit)]
        await sender.close()  # while its acks are still read, or its close would wait
        await acks
        await watcher.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(slow.close(), 1)


async def _raw_handshake(base_url: str, token: str) -> asyncio.StreamWriter:
    """A client that completes the WebSocket handshake, then never says a word again
    (never answers a ping): what a vanished phone looks like to the server."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {WS_PATH}?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return writer


async def test_dead_client_is_dropped_and_goes_offline(tmp_path: Path) -> None:
    settings = social_settings(tmp_path, ws_ping_interval=0.3, ws_ping_timeout=0.3)
    async with start(settings) as server:
        ghost, watcher_user = await server.user(), await server.user()
        watcher = await open_socket(server.base_url, await watcher_user.ticket())
        await receive(watcher)
        await send(watcher, {"type": "presence.watch", "users": [ghost.user_id]})
        await receive(watcher)

        silent = await _raw_handshake(server.base_url, await ghost.ticket())
        assert await receive_until(watcher, "presence.join") == {
            "type": "presence.join",
            "userId": ghost.user_id,
        }
        # The watcher's own client answers pings (websockets does): it stays.
        assert await receive_until(watcher, "presence.leave", timeout=5) == {
            "type": "presence.leave",
            "userId": ghost.user_id,
        }
        assert social_devices(server, ghost.user_id) == 0
        await send(watcher, {"type": "chat", "content": "still here"})
        assert (await receive(watcher))["type"] == "echo"
        silent.close()
        await watcher.close()


async def test_users_of_a_crashed_instance_go_offline(tmp_path: Path) -> None:
    """A peer instance that died leaves device entries nobody refreshes and publishes no
    leave: the recheck sees the entry expire and tells the watchers."""
    settings = social_settings(tmp_path, presence_ttl=1.0, presence_recheck_interval=0.5)
    async with start(settings) as server:
        watcher_user = await server.user()
        watcher = await watcher_user.socket()
        await send(watcher, {"type": "presence.watch", "users": ["crashed-user"]})
        assert await receive(watcher) == {"type": "presence", "online": []}

        # What the other instance did before it died: joined, announced, then nothing.
        tracker: PresenceTracker = server.social.provided(SocialServices).presence
        assert await server.app.backends.presence.join("crashed-user", "its-device", 1.0)
        await server.app.backends.pubsub.publish(
            tracker.channel("crashed-user"),
            orjson.dumps({"kind": "join", "user_id": "crashed-user"}),
        )
        assert await receive(watcher) == {"type": "presence.join", "userId": "crashed-user"}
        assert await receive(watcher, timeout=3) == {
            "type": "presence.leave",
            "userId": "crashed-user",
        }
        await watcher.close()


async def test_live_devices_are_refreshed_past_their_ttl(tmp_path: Path) -> None:
    settings = social_settings(tmp_path, presence_ttl=0.6, presence_recheck_interval=0.2)
    async with start(settings) as server:
        alice, bob = await server.user(), await server.user()
        watcher = await alice.socket()
        ws = await bob.socket()
        await send(watcher, {"type": "presence.watch", "users": [bob.user_id]})
        assert await receive(watcher) == {"type": "presence", "online": [bob.user_id]}
        await asyncio.sleep(2.0)  # over three TTLs: only refreshes keep bob online
        await send(watcher, {"type": "presence.query", "users": [bob.user_id]})
        assert await receive(watcher) == {"type": "presence", "online": [bob.user_id]}
        await ws.close()
        await watcher.close()
