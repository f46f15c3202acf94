"""The two servers the social socket is measured against (bench/social_bench.py).

Both speak the social socket's frames (docs/social.md) and do the same work per frame:
parse the JSON, answer an echo to `{"type": "chat", "content": ...}`, and for a frame
with `"to": R` serialize one chat frame, send it to every socket of room `R` and ack
the sender. Neither checks a ticket, counts a limit or bounds a queue: that is the work
Agora adds, and what the comparison prices.

    bare_app       Starlette on uvicorn, one task per socket sending directly; a socket
                   joins room R with `?room=R` (Agora: the devices of user R)
    socketio_app   python-socketio (ASGI) doing the same over its own protocol: event
                   `chat` in, `echo` / `chat` / `ack` events out; a socket joins room R
                   with the connect auth `{"room": R}`; rooms are socketio's rooms

Run one with uvicorn, one worker:
    .venv/bin/uvicorn bench.socket_baselines:bare_app --port 8001
    .venv/bin/uvicorn bench.socket_baselines:socketio_app --port 8002
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import socketio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def echo_of(frame: dict[str, Any]) -> dict[str, Any]:
    echo: dict[str, Any] = {
        "type": "echo",
        "content": frame.get("content"),
        "receivedAt": now_iso(),
    }
    if "timestamp" in frame:
        echo["timestamp"] = frame["timestamp"]
    return echo


def chat_of(frame: dict[str, Any], sender: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat frame for the room, and the ack for the sender."""
    message_id = uuid.uuid4().hex
    sent_at = now_iso()
    chat = {
        "type": "chat",
        "from": sender,
        "content": frame.get("content"),
        "id": message_id,
        "sentAt": sent_at,
    }
    ack = {"type": "ack", "id": message_id, "to": frame["to"], "sentAt": sent_at}
    if "id" in frame:
        ack["clientId"] = frame["id"]
    return chat, ack


# --- bare Starlette ----------------------------------------------------------------------

rooms: dict[str, set[WebSocket]] = {}


async def bare_socket(ws: WebSocket) -> None:
    await ws.accept()
    room = ws.query_params.get("room", "")
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        while True:
            frame = orjson.loads(await ws.receive_text())
            if "to" not in frame:
                await ws.send_text(orjson.dumps(echo_of(frame)).decode())
                continue
            chat, ack = chat_of(frame, room)
            text = orjson.dumps(chat).decode()
            for member in tuple(rooms.get(str(frame["to"]), ())):
                try:  # noqa: SIM105 (the measured loop stays as it was: no context manager)
                    await member.send_text(text)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    pass  # that member is leaving; its own task removes it
            await ws.send_text(orjson.dumps(ack).decode())
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(ws)
        if not members:
            rooms.pop(room, None)


async def health(_request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


bare_app = Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", bare_socket)])


# --- python-socketio ---------------------------------------------------------------------

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])
room_of: dict[str, str] = {}


@sio.event
async def connect(sid: str, _environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    room = str((auth or {}).get("room", ""))
    room_of[sid] = room
    await sio.enter_room(sid, room)


@sio.event
async def disconnect(sid: str, *_args: Any) -> None:
    room_of.pop(sid, None)


@sio.on("chat")
async def chat(sid: str, frame: dict[str, Any]) -> None:
    if "to" not in frame:
        await sio.emit("echo", echo_of(frame), to=sid)
        return
    chat_frame, ack = chat_of(frame, room_of.get(sid, ""))
    await sio.emit("chat", chat_frame, room=str(frame["to"]))
    await sio.emit("ack", ack, to=sid)


socketio_app = socketio.ASGIApp(sio, other_asgi_app=bare_app)
