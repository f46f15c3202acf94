"""The load side of bench/messaging_bench.py: Phoenix-framed messaging sockets on uvloop.

Runs in client processes of its own (forked, one event loop each), so that what the
clients spend is not taken from the server's cores unnoticed (each job reports its CPU).
Jobs:

    receivers  open one device per member (ticket, socket, welcome, join `user:<id>`),
               then count the `message:new` pushes of the conversation, each with its
               latency: arrival minus the send timestamp written in the message text
    senders    open one device per sender (join `conversation:<id>`), then send the
               messages over the socket (`message:send`), at most `window` un-acked per
               socket; every reply must be ok (a 429 or a refusal stops the row)

The same process also serves the catch-up row (`catchup_socket`, `catchup_rest`), run
from the parent's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.social_bench import (
    client_processes,
    fanout_receivers,
    fanout_sender,
    results_of,
    run_client_job,
    sleep_until,
    wait_at,
)

SOCKET_PATH = "/socket/websocket"
# The message text after the send timestamp: ordinary words (a run of one character
# would be audited as suspicious flooding on every message, a path of its own).
FILL = "the quick brown fox jumps over the lazy dog, then naps in the sun"
# A join reply carries up to messaging_sync_max_messages messages (about 0.5 MB here).
SOCKET_OPTIONS: dict[str, Any] = {"ping_interval": None, "open_timeout": 60, "max_size": 2**24}
OPENING = 16  # sockets a process opens at once


class PhoenixSocket:
    """One device speaking the messaging socket's frames (docs/messaging.md)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_ref = 0

    async def push(self, topic: str, event: str, payload: dict[str, Any]) -> str:
        self.next_ref += 1
        ref = str(self.next_ref)
        frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        await self.ws.send(orjson.dumps(frame).decode())
        return ref

    async def recv(self) -> dict[str, Any]:
        return orjson.loads(await self.ws.recv())

    async def call(self, topic: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Push and wait for the reply with the same ref; an error reply raises."""
        ref = await self.push(topic, event, payload)
        while True:
            frame = await self.recv()
            if frame.get("event") == "phx_reply" and frame.get("ref") == ref:
                return ok_response(frame, f"{event} {topic}")

    def abort(self) -> None:
        if self.ws.transport is not None:
            self.ws.transport.abort()


def ok_response(frame: dict[str, Any], what: str) -> dict[str, Any]:
    reply = frame.get("payload") or {}
    if reply.get("status") != "ok":
        raise RuntimeError(f"{what} refused: {reply}")
    return reply.get("response") or {}


async def ticket(http: httpx.AsyncClient, spec: dict[str, Any], token: str) -> str:
    response = await http.get(
        spec["base"] + spec["ticket_path"], headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return str(response.json()["token"])


async def open_device(http: httpx.AsyncClient, spec: dict[str, Any], token: str) -> PhoenixSocket:
    """A messaging socket past its welcome push."""
    one_time = await ticket(http, spec, token)
    base = spec["base"].replace("http://", "ws://")
    ws = await connect(f"{base}{SOCKET_PATH}?token={one_time}", **SOCKET_OPTIONS)
    welcome = orjson.loads(await ws.recv())
    if welcome.get("event") != "connected":
        ws.transport.abort()
        raise RuntimeError(f"socket refused: {welcome}")
    return PhoenixSocket(ws)


async def open_devices(spec: dict[str, Any], tokens: list[str]) -> list[PhoenixSocket]:
    slots = asyncio.Semaphore(OPENING)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(token: str) -> PhoenixSocket:
            async with slots:
                return await open_device(http, spec, token)

        return list(await asyncio.gather(*(one(token) for token in tokens)))


# --- jobs --------------------------------------------------------------------------------


async def receivers(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    spec, conversation = job["target"], job["conversation_id"]
    devices = await open_devices(spec, job["tokens"])
    for device, user_id in zip(devices, job["user_ids"], strict=True):
        await device.call(f"user:{user_id}", "phx_join", {})
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    _go, _start_at, deadline = sync["times"][:]
    cpu_start = time.process_time()
    latencies: list[float] = []
    last = [0.0]

    async def receive(device: PhoenixSocket) -> None:
        got = 0
        while got < job["messages"]:
            frame = await device.recv()
            if frame.get("event") != "message:new":
                continue
            message = frame["payload"]
            if message.get("conversation_id") != conversation:
                continue
            now = time.time()
            latencies.append(now - float(message["text"].split(" ", 1)[0]))
            last[0] = max(last[0], now)
            got += 1

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(receive(d) for d in devices)), deadline - time.time()
        )
    cpu = time.process_time() - cpu_start
    for device in devices:
        device.abort()
    return {"latencies": latencies, "last": last[0], "cpu": cpu}


async def send_all(
    device: PhoenixSocket, topic: str, client_ids: list[str], window: int, fill: str = FILL
) -> tuple[int, list[Any]]:
    """Send one message per client id, `window` un-acked at most: (acks, error replies);
    each text is a send timestamp and `fill`."""
    slots = asyncio.Semaphore(window)
    pending: set[str] = set()
    acks = [0]
    errors: list[Any] = []

    async def read_replies() -> None:
        while acks[0] + len(errors) < len(client_ids):
            frame = await device.recv()
            if frame.get("event") != "phx_reply" or frame.get("ref") not in pending:
                continue
            pending.discard(frame["ref"])
            slots.release()
            if (frame.get("payload") or {}).get("status") == "ok":
                acks[0] += 1
            else:
                errors.append(frame.get("payload"))

    reader = asyncio.create_task(read_replies())
    for client_id in client_ids:
        await slots.acquire()
        if errors:  # a refusal (429, 422) ends the row: the figures would mean nothing
            break
        text = f"{time.time():.6f} {fill}"
        ref = await device.push(topic, "message:send", {"client_id": client_id, "text": text})
        pending.add(ref)
    if errors:
        reader.cancel()
    else:
        await reader
    return acks[0], errors


async def senders(job: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    spec, topic = job["target"], f"conversation:{job['conversation_id']}"
    devices = await open_devices(spec, job["tokens"])
    for device in devices:
        await device.call(topic, "phx_join", {"last_seq": job["last_seq"]})
    await wait_at(sync["ready"])
    await wait_at(sync["go"])
    go, _start_at, deadline = sync["times"][:]
    await sleep_until(go)
    cpu_start = time.process_time()
    first = time.time()
    shares = [job["client_ids"][i :: len(devices)] for i in range(len(devices))]
    out: list[tuple[int, list[Any]]] = []
    with contextlib.suppress(TimeoutError):
        sending = (
            send_all(device, topic, ids, job["window"])
            for device, ids in zip(devices, shares, strict=True)
        )
        out = await asyncio.wait_for(asyncio.gather(*sending), deadline - time.time())
    cpu = time.process_time() - cpu_start
    for device in devices:
        device.abort()
    errors = [e for _acks, errs in out for e in errs]
    return {"first": first, "acks": sum(a for a, _ in out), "errors": errors[:3], "cpu": cpu}


# --- catch-up (run in the parent's loop, one device at a time) ----------------------------


def catchup_of(response: dict[str, Any]) -> dict[str, Any]:
    """The Catchup JSON in a `conversation:<id>` join reply."""
    body = response.get("catchup", response)
    if "recovered" not in body:
        raise RuntimeError(f"no catch-up in the join reply: {list(response)}")
    return body


def check_sequence(messages: list[dict[str, Any]], after: int, count: int, how: str) -> None:
    seqs = [m["seq"] for m in messages]
    if seqs != list(range(after + 1, after + count + 1)):
        raise RuntimeError(f"{how}: expected seq {after + 1}..{after + count}, got {len(seqs)}")


async def streamed_catchup(
    device: PhoenixSocket, topic: str, last_seq: int
) -> tuple[dict[str, Any], list[dict[str, Any]], int, int]:
    """Join `topic` asking for the stream (docs/messaging.md §3.4): the reply's catch-up,
    every message (reply and `sync:batch` pushes, up to `sync:done`), bytes and frames."""
    ref = await device.push(topic, "phx_join", {"last_seq": last_seq, "stream": True})
    body: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = []
    size = frames = 0
    while True:
        raw = await device.ws.recv()
        frame = orjson.loads(raw)
        event = frame.get("event")
        if event == "phx_reply" and frame.get("ref") == ref:
            body = catchup_of(ok_response(frame, f"phx_join {topic}"))
            messages += body["messages"]
        elif event == "sync:batch" and frame.get("topic") == topic:
            messages += frame["payload"]["messages"]
        elif event != "sync:done":
            continue
        size += len(raw)
        frames += 1
        if body is not None and (event == "sync:done" or "streamed" not in body):
            return body, messages, size, frames


async def catchup_socket(
    spec: dict[str, Any], token: str, conversation_id: str, last_seq: int, count: int, reps: int
) -> list[dict[str, float]]:
    """A device reconnects (ticket, socket, welcome) and joins with its last seq, asking
    for the catch-up to be streamed; timed to its last message."""
    topic = f"conversation:{conversation_id}"
    rows: list[dict[str, float]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(reps):
            began = time.perf_counter()
            device = await open_device(http, spec, token)
            joining = time.perf_counter()
            body, messages, size, frames = await streamed_catchup(device, topic, last_seq)
            ended = time.perf_counter()
            device.abort()
            if not body["recovered"]:
                raise RuntimeError(f"catch-up of {count} not recovered: {body.get('hint')}")
            check_sequence(messages, last_seq, count, "streamed catch-up")
            rows.append(
                {
                    "join_s": ended - joining,
                    "reconnect_s": ended - began,
                    "reply_bytes": size,
                    "frames": frames,
                }
            )
    return rows


async def catchup_rest(
    spec: dict[str, Any],
    token: str,
    conversation_id: str,
    last_seq: int,
    count: int,
    reps: int,
    page: int,
) -> list[dict[str, float]]:
    """The same messages paged over REST (`after=`, `limit=page`), one request at a time."""
    path = f"/api/v1/conversations/{conversation_id}/messages"
    rows = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=spec["base"], headers=headers, timeout=30) as http:
        await http.get(path, params={"limit": 1})  # the connection, opened once
        for _ in range(reps):
            began = time.perf_counter()
            messages: list[dict[str, Any]] = []
            after, requests = last_seq, 0
            while len(messages) < count:
                answer = await http.get(path, params={"after": after, "limit": page})
                answer.raise_for_status()
                body = answer.json()
                requests += 1
                messages += body["messages"]
                if not body["messages"] or not body["has_more"]:
                    break
                after = messages[-1]["seq"]
            ended = time.perf_counter()
            check_sequence(messages, last_seq, count, "REST pages")
            rows.append({"pages_s": ended - began, "requests": requests})
    return rows


JOBS = {
    "receivers": receivers,
    "senders": senders,
    # The baselines' fan-out: bench/social_bench.py's own jobs (social frames).
    "social-receivers": fanout_receivers,
    "social-sender": fanout_sender,
}


def client_main(job: dict[str, Any], sync: dict[str, Any]) -> None:
    run_client_job(JOBS, job, sync)


# Forked, not spawned: a fork of the parent (which has imported everything and holds no
# thread or open loop between rows) starts in milliseconds, a spawn in seconds on a
# busy machine, and a row spawns three.
CTX = mp.get_context("fork")


def clients(jobs: list[dict[str, Any]]) -> contextlib.AbstractContextManager[dict[str, Any]]:
    """One process per job; the parent meets them at the `ready` and `go` barriers."""
    return client_processes(jobs, client_main, ("ready", "go"), context=CTX)


__all__ = ["clients", "results_of"]
