"""The life of one socket, whatever its frames mean.

    address blocked? -> protocol options -> ticket -> count the open per IP -> welcome
    -> hub + presence -> read loop -> cleanup (hub, presence leave, unwatch, timers),
    always, however it ended

Only sockets that open count against the connections per IP: a client retrying with a
stale ticket is refused every time, but never locks its address out of the next valid
ticket. Refusals are answered as the service's clients expect: social (seed 003) accepts
the socket, sends an error frame and closes with the code (`codes`); messaging, as a
Phoenix server refusing `connect`, answers the HTTP handshake itself (403, 429, 503) so
that a client such as phoenix.js never sees an open socket and backs off by itself.

A service subclasses `SocketEndpoint` with `welcome` and `on_frame` (social's in
`services/social/socket.py`), and `settle` when some frames' work outlives `on_frame`
(messaging's sends, run side by side). Every frame a client sends counts against the user's
message limit before `on_frame` sees it. The task serving the socket reads it; a
writer task exists only while frames wait to be sent (`Connection`). The socket ends
when the client leaves, a send to it fails, or the server closes it: a close (session
ended, limit, slow consumer) stops the reading, and the socket ends once the close is
sent, or after `close_grace`; a server shutdown lets it answer the frames it has read
and send its queue first (1012, `runtime.websocket_protocol`); a client that stops
answering protocol pings is dropped by the server (uvicorn's `ws_ping_interval`/
`ws_ping_timeout`) and ends the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from agora.core.audit import Audit
from agora.core.logs import SCOPE_USER_ID
from agora.core.metrics import SOCKET_CONNECTIONS, SOCKETS_OPEN
from agora.realtime.codes import (
    FRAME_TOO_LARGE,
    SERVER_ERROR,
    SESSION_ENDED,
    SLOW_CONSUMER,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_MESSAGES,
    TRY_AGAIN_LATER,
    CloseReason,
    is_server_restart,
)
from agora.realtime.connection import Connection, error_frame
from agora.realtime.hub import Hub
from agora.realtime.limits import RateLimiter, Verdict
from agora.realtime.presence import PresenceTracker
from agora.realtime.tickets import Ticket, TicketRefused, TicketService

log = logging.getLogger("agora.realtime.endpoint")

INTERNAL_ERROR = "Internal error"

# The HTTP status of a refusal at the handshake; any other refusal is 403, as Phoenix's.
HANDSHAKE_STATUS = {TOO_MANY_CONNECTIONS.code: 429, TRY_AGAIN_LATER.code: 503}


def query_param(ws: WebSocket, name: str) -> str | None:
    """A query parameter of the handshake. Not `ws.query_params`, which keeps the parsed
    query (the ticket's text included) on the WebSocket for the socket's life: about
    1.7 KB per idle socket (issue 13)."""
    return QueryParams(ws.scope.get("query_string", b"")).get(name)


class Refused(Exception):
    """The socket is refused before its ticket is looked at (`negotiate`)."""

    def __init__(self, close: CloseReason, reason: str) -> None:
        super().__init__(close.message)
        self.close = close
        self.reason = reason  # for the audit trail


class SocketEndpoint:
    def __init__(
        self,
        *,
        name: str,
        audit: Audit,
        tickets: TicketService,
        hub: Hub,
        presence: PresenceTracker,
        connect_limiter: RateLimiter,
        message_limiter: RateLimiter,
        max_message_bytes: int,
        max_queued_bytes: int,
        close_grace: float,
    ) -> None:
        self.name = name  # audit events are `<name>.ticket_refused`, ...
        self.audit = audit
        self.tickets = tickets
        self.hub = hub
        self.presence = presence
        self.connect_limiter = connect_limiter
        self.message_limiter = message_limiter
        self.max_message_bytes = max_message_bytes
        self.max_queued_bytes = max_queued_bytes
        self.close_grace = close_grace
        self._open = SOCKETS_OPEN.labels(name)
        self._connected = SOCKET_CONNECTIONS.labels(name)

    # --- what a service defines ------------------------------------------------------------

    # True: refusals are HTTP answers to the handshake; False: error frame + close code.
    refuse_at_handshake = False
    connection_class: type[Connection] = Connection

    def negotiate(self, ws: WebSocket) -> dict[str, Any]:
        """The protocol options the handshake asks for (`connection_class`'s extra
        arguments); raises Refused. Checked before the ticket, which stays unburned."""
        return {}

    def welcome(self, conn: Connection) -> str:
        raise NotImplementedError

    async def on_frame(self, conn: Connection, text: str) -> None:
        raise NotImplementedError

    async def settle(self, conn: Connection) -> None:
        """Wait for the work of frames already read that still runs (a service that runs
        some frames side by side, messaging's sends): their answers go before the close."""

    async def on_close(self, conn: Connection) -> None:
        """The service's own cleanup of a closed socket (topics, timers), run before
        the hub and presence let it go; shielded from a shutdown's cancel."""

    # --- the lifecycle ---------------------------------------------------------------------

    async def handle(self, ws: WebSocket) -> None:
        """The ASGI WebSocket route."""
        ip = ws.client.host if ws.client else None
        if not self.refuse_at_handshake:
            await ws.accept()
        if ip is not None and await self.connect_limiter.blocked_for(ip) > 0:
            await self._refuse(ws, TOO_MANY_CONNECTIONS)
            return
        try:
            options = self.negotiate(ws)
        except Refused as refused:
            await self.audit.record(f"{self.name}.handshake_refused", reason=refused.reason, ip=ip)
            await self._refuse(ws, refused.close)
            return
        try:
            ticket = await self.tickets.redeem(query_param(ws, "token"))
        except TicketRefused as refused:
            reused = refused.reason == "reused"
            await self.audit.record(
                f"{self.name}.ticket_reused" if reused else f"{self.name}.ticket_refused",
                reason=refused.reason,
                code=refused.close.code,
                user_id=refused.user_id,
                jti=refused.jti,
                ip=ip,
            )
            await self._refuse(ws, refused.close)
            return
        if ip is not None:  # counted once the ticket is good: refusals lock nobody out
            verdict = await self.connect_limiter.hit(ip)
            if not verdict.allowed:
                await self._audit_limit(verdict, "connections", ip=ip)
                await self._refuse(ws, TOO_MANY_CONNECTIONS)
                return
        if self.refuse_at_handshake:
            await ws.accept()
        ws.scope[SCOPE_USER_ID] = ticket.user_id  # for the access log
        # The scope lives as long as the socket; nothing reads its headers or query (the
        # ticket) once the ticket is redeemed: about 1.5 KB per idle socket (issue 13).
        ws.scope["headers"] = []
        ws.scope["query_string"] = b""
        conn = self.connection_class(
            ws,
            user_id=ticket.user_id,
            login=ticket.login,
            session_jti=ticket.session_jti,
            session_iat=ticket.session_iat,
            ip=ip,
            max_queued_bytes=self.max_queued_bytes,
            close_grace=self.close_grace,
            **options,
        )
        await self._run(conn, ticket)

    async def _refuse(self, ws: WebSocket, reason: CloseReason) -> None:
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            if self.refuse_at_handshake:
                await self._deny(ws, reason)
                return
            await ws.send_text(error_frame(reason.message))
            await ws.close(reason.code, reason.message)

    @staticmethod
    async def _deny(ws: WebSocket, reason: CloseReason) -> None:
        """An HTTP answer instead of the upgrade, its body saying why."""
        status = HANDSHAKE_STATUS.get(reason.code, 403)
        body = {"error": reason.message, "code": reason.code}
        try:
            await ws.send_denial_response(JSONResponse(body, status))
        except RuntimeError:  # a server without the denial extension: a bare 403
            await ws.close(reason.code, reason.message)

    async def _run(self, conn: Connection, ticket: Ticket) -> None:
        conn.send(self.welcome(conn))  # first in the queue, before any delivery
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(
            max(0.0, ticket.session_exp - time.time()), conn.close, SESSION_ENDED
        )
        self._log("connected", conn)
        self._connected.inc()
        self._open.inc()
        try:
            try:
                await self.hub.add(conn)
                await self.presence.join(conn)
                await self._read(conn)  # until the client leaves, or `conn.close`
                await self.settle(conn)  # the work of the frames read, before the close
            except Exception:  # a backend (pub/sub, presence, limits) failed us
                log.exception("socket failed for user %s", conn.user_id)
                conn.close(SERVER_ERROR)
            await conn.finish()  # closed by us: the error frame and the close
        finally:
            expiry.cancel()
            self._open.dec()
            await conn.stop_writer()
            await self._cleanup(conn)

    async def _cleanup(self, conn: Connection) -> None:
        # Shielded: a server shutdown cancelling us must still take the device offline.
        try:
            await asyncio.shield(self._leave(conn))
        except Exception:  # the presence entry expires by itself within its TTL
            log.exception("socket cleanup failed for user %s", conn.user_id)
        reason = conn.closing
        if reason is SLOW_CONSUMER:
            await self.audit.record(
                f"{self.name}.slow_consumer",
                user_id=conn.user_id,
                ip=conn.ip,
                limit_bytes=conn.max_queued_bytes,
            )
        self._log(
            "disconnected",
            conn,
            code=reason.code if reason else None,
            reason=reason.message if reason else "client closed",
            seconds=round(time.monotonic() - conn.opened_at, 3),
        )

    async def _leave(self, conn: Connection) -> None:
        try:
            await self.on_close(conn)
        finally:
            await self.hub.remove(conn)
            await self.presence.leave(conn)

    async def _read(self, conn: Connection) -> None:
        # The loop inline, not in a helper coroutine or a context manager: each would
        # stay alive as long as the socket (issue 5: memory per idle socket).
        conn.start_reading()
        try:
            ws = conn.ws
            while conn.closing is None and not conn.broken:
                await conn.drained()
                if conn.closing is not None:
                    return
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    if is_server_restart(message):  # after every frame it had read
                        await self.settle(conn)  # and answered: restart drops new frames
                        conn.restart()
                    return
                text = message.get("text")
                size = len(text) if text is not None else len(message.get("bytes") or b"")
                if size > self.max_message_bytes or (
                    text is not None
                    and not text.isascii()
                    and len(text.encode()) > self.max_message_bytes
                ):
                    conn.close(FRAME_TOO_LARGE)
                    return
                verdict = await self.message_limiter.hit(conn.user_id)
                if not verdict.allowed:
                    await self._audit_limit(verdict, "messages", user_id=conn.user_id, ip=conn.ip)
                    conn.close(TOO_MANY_MESSAGES)
                    return
                if text is None:
                    conn.send(error_frame("Text frames only"))
                    continue
                try:
                    await self.on_frame(conn, text)
                except Exception:  # a bug or a backend outage: this frame fails, not the socket
                    log.exception("frame handling failed for user %s", conn.user_id)
                    conn.send(error_frame(INTERNAL_ERROR))
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client is gone
        except asyncio.CancelledError as cancelled:
            conn.stop_reading(cancelled)  # raises it again unless it was our `interrupt`
        finally:
            conn.stop_reading()

    async def _audit_limit(self, verdict: Verdict, scope: str, **fields: Any) -> None:
        """Blocks are audited when they start; refusals during a block are only counted."""
        if verdict.new_block_level is not None:
            await self.audit.record(
                f"{self.name}.rate_limited",
                scope=scope,
                level=verdict.new_block_level,
                seconds=verdict.retry_after,
                **fields,
            )

    def _log(self, event: str, conn: Connection, **fields: Any) -> None:
        # The audit JSON line without a stored row: opening and closing sockets is
        # traffic, not a security decision (refusals, reuse and blocks are stored).
        self.audit.log(
            self.audit.entry(
                f"{self.name}.{event}",
                user_id=conn.user_id,
                device_id=conn.device_id,
                ip=conn.ip,
                **fields,
            )
        )
