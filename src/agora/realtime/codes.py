"""Why a socket is closed: the error frame's message and the close code (docs/social.md).

Every refusal and every server-side close sends `{"type": "error", "message": ...}`
first, then a close frame with the code below and the same text as its reason.
4xxx codes are ours (RFC 6455 leaves 4000-4999 to applications); they echo the HTTP
status a REST client would see, so a client can branch on `code // 1` in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CloseReason:
    code: int
    message: str


# Refusals at connect, before the welcome frame.
TICKET_REQUIRED = CloseReason(4400, "Token required")
INVALID_TICKET = CloseReason(4401, "Invalid or expired token")
WRONG_TYPE = CloseReason(4403, "Invalid token type")
ALREADY_USED = CloseReason(4409, "Token already used")
TOO_MANY_CONNECTIONS = CloseReason(4429, "Too many connections")
# The shared cache is unreachable: tickets cannot be burned safely (RFC 6455's 1013).
TRY_AGAIN_LATER = CloseReason(1013, "Try again later")

# Closes of an open socket.
SESSION_ENDED = CloseReason(4410, "Session ended")
TOO_MANY_MESSAGES = CloseReason(4429, "Too many messages")
SLOW_CONSUMER = CloseReason(4008, "Slow consumer")
FRAME_TOO_LARGE = CloseReason(1009, "Frame too large")
SERVER_ERROR = CloseReason(1011, "Internal error")
# The server is stopping (RFC 6455's 1012): sent once the frames it read are answered.
SERVER_RESTART = CloseReason(1012, "Server restart")


def is_server_restart(event: Mapping[str, object]) -> bool:
    """An ASGI `websocket.disconnect` that says the server is stopping, not the client
    leaving (`runtime.websocket_protocol` sends it, after the frames it has read)."""
    code, reason = event.get("code"), event.get("reason")
    return code == SERVER_RESTART.code and reason == SERVER_RESTART.message
