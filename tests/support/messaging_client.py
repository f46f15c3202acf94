"""A device of the messaging socket, as a client app would be: Phoenix-style JSON frames
(`{"topic", "event", "payload", "ref"}`) over `/socket/websocket?token=<ticket>`.

One reader task takes every frame off the wire as it comes: a `phx_reply` resolves
the request with the same `ref`, anything else (a push) is kept in arrival order until
the test takes it with `expect` (the first push that matches, others stay) or looks at
all of them with `pushes`. Every wait is bounded and its failure shows what the device
did receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

SOCKET_PATH = "/socket/websocket"
WAIT_SECONDS = 5.0

Frame = dict[str, Any]
Match = Callable[[Frame], bool]


class ReplyError(Exception):
    """An error reply: its `response` (`reason`, `status`, maybe `fields`/`retry_after`)."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response)
        self.response = response


class Device:
    def __init__(self, connection: ClientConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self.welcome: Frame = {}
        self.received: list[Frame] = []  # every push, in arrival order, never consumed
        self._pending: list[Frame] = []  # pushes not yet taken by `expect`
        self._replies: dict[str, asyncio.Future[Frame]] = {}
        self._refs = itertools.count(1)
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, base_ws_url: str, ticket: str, name: str = "device") -> Device:
        """Connect and wait for the welcome push (topic `phoenix`, event `connected`)."""
        connection = await connect(
            f"{base_ws_url}{SOCKET_PATH}?token={ticket}", open_timeout=WAIT_SECONDS, proxy=None
        )
        device = cls(connection, name)
        device._reader = asyncio.create_task(device._read(), name=f"reader-{name}")
        device.welcome = await device.expect("connected", topic="phoenix")
        return device

    @property
    def user_id(self) -> str:
        user_id: str = self.welcome["payload"]["user_id"]
        return user_id

    @property
    def user_topic(self) -> str:
        """`user:<id>` of the device's own user."""
        return f"user:{self.user_id}"

    # --- the wire ------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                frame: Frame = orjson.loads(raw)
                ref = frame.get("ref")
                if frame.get("event") == "phx_reply" and ref is not None:
                    future = self._replies.get(str(ref))  # taken by `reply`
                    if future is not None and not future.done():
                        future.set_result(frame)
                    continue
                self.received.append(frame)
                self._pending.append(frame)
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._arrived.set()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: socket closed"))
                    future.exception()  # retrieved: a request nobody awaits is no error

    async def push(self, topic: str, event: str, payload: dict[str, Any]) -> str:
        """Send one frame without waiting for its reply; returns its ref."""
        ref = str(next(self._refs))
        self._replies[ref] = asyncio.get_running_loop().create_future()
        frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        try:
            await self.connection.send(orjson.dumps(frame).decode())
        except ConnectionClosed as closed:
            self._replies.pop(ref, None)
            raise ConnectionError(f"{self.name}: socket closed") from closed
        return ref

    async def reply(self, ref: str, timeout: float = WAIT_SECONDS) -> Frame:
        """The `phx_reply` frame of request `ref` (once: the reply is taken)."""
        future = self._replies.get(ref)
        if future is None:
            pytest.fail(f"{self.name}: no request with ref {ref}")
        try:
            frame = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            pytest.fail(f"{self.name}: no reply to ref {ref} within {timeout}s")
        del self._replies[ref]
        return frame

    def answered(self, ref: str) -> bool:
        """Whether the reply to request `ref` has arrived (and is not taken yet)."""
        future = self._replies.get(ref)
        return future is not None and future.done() and future.exception() is None

    async def request(
        self, topic: str, event: str, payload: dict[str, Any], timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """Send and wait for the reply; the `response` of an ok reply, else ReplyError."""
        ref = await self.push(topic, event, payload)
        frame = await self.reply(ref, timeout)
        assert frame["topic"] == topic and frame["ref"] == ref, frame
        body = frame["payload"]
        response: dict[str, Any] = body.get("response") or {}
        if body.get("status") != "ok":
            raise ReplyError(response)
        return response

    async def join(self, topic: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request(topic, "phx_join", payload or {})

    async def leave(self, topic: str) -> dict[str, Any]:
        return await self.request(topic, "phx_leave", {})

    # --- pushes ----------------------------------------------------------------------------

    def pushes(self, event: str, topic: str | None = None) -> list[Frame]:
        """Every push of that event (and topic) received so far, taken or not."""
        return [
            frame
            for frame in self.received
            if frame.get("event") == event and (topic is None or frame.get("topic") == topic)
        ]

    def take_all(self, event: str, topic: str | None = None) -> list[Frame]:
        """Take (and return) every pending push of that event and topic."""
        taken = [f for f in self._pending if _matches(f, event, topic, None)]
        self._pending = [f for f in self._pending if not _matches(f, event, topic, None)]
        return taken

    async def expect(
        self,
        event: str,
        *,
        topic: str | None = None,
        where: Match | None = None,
        timeout: float = WAIT_SECONDS,
    ) -> Frame:
        """Take the first pending push of `event` (on `topic`, satisfying `where`)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, frame in enumerate(self._pending):
                if _matches(frame, event, topic, where):
                    del self._pending[index]
                    return frame
            left = deadline - time.monotonic()
            if left <= 0 or self.closed.is_set():
                seen = [(f.get("topic"), f.get("event")) for f in self._pending][-20:]
                pytest.fail(
                    f"{self.name}: no {event!r} push on {topic or 'any topic'} within "
                    f"{timeout}s (closed: {self.closed.is_set()}; pending: {seen})"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def expect_none(
        self,
        event: str,
        *,
        topic: str | None = None,
        where: Match | None = None,
        within: float = 0.5,
    ) -> None:
        """No pending push of `event` arrives within `within` seconds."""
        await asyncio.sleep(within)
        extra = [f for f in self._pending if _matches(f, event, topic, where)]
        assert not extra, f"{self.name}: unexpected {event!r} pushes: {extra}"

    # --- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, WAIT_SECONDS)

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


def _matches(frame: Frame, event: str, topic: str | None, where: Match | None) -> bool:
    if frame.get("event") != event:
        return False
    if topic is not None and frame.get("topic") != topic:
        return False
    return where is None or where(frame)


# --- Phoenix's shapes ----------------------------------------------------------------------------


def presence(*user_ids: str) -> dict[str, Any]:
    """A `presence_state` payload (Phoenix.Presence's shape) listing these users."""
    return {user_id: {"metas": [{"phx_ref": user_id}]} for user_id in user_ids}


def diff(
    joins: tuple[str, ...] | list[str] = (), leaves: tuple[str, ...] | list[str] = ()
) -> Frame:
    """A `presence_diff` payload: these users joined, these left."""
    return {"joins": presence(*joins), "leaves": presence(*leaves)}


async def handshake_refusal(url: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of a socket refused at its handshake (no upgrade)."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=WAIT_SECONDS, proxy=None):
            pass
    response = refused.value.response
    return response.status_code, orjson.loads(response.body or b"{}")
