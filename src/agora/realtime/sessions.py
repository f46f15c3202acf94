"""Session-ended notices: sockets close when the session behind them ends elsewhere.

A socket outlives the HTTP request that got its ticket, so the services that end
sessions tell the socket instances, on the pub/sub channel `<key_prefix>sessions`:

    {"kind": "revoked", "user_id": "42", "jti": "...", "everywhere": false}
    {"kind": "revoked", "user_id": "42", "jti": "...", "everywhere": true, "before": 1700000000}
    {"kind": "disconnected", "user_id": "42"}

`revoked` comes from the auth service's logout: one access session (its `jti`), or
with `everywhere` every session of the user issued before `before` (epoch seconds).
`disconnected` (the publications service marking the user disconnected) ends all of
the user's sockets. Every socket instance subscribes and closes its matching sockets
with "Session ended". Pub/sub is fire-and-forget: an instance that misses a notice
still refuses the next ticket of a revoked session, and closes every socket when the
access token behind it expires.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from agora.ports.pubsub import PubSub
from agora.realtime.channels import ChannelRouter
from agora.realtime.codes import SESSION_ENDED
from agora.realtime.hub import Hub
from agora.security.tokens import Identity

log = logging.getLogger("agora.realtime.sessions")


def sessions_channel(key_prefix: str) -> str:
    return f"{key_prefix}sessions"


def revoked_notice(identity: Identity, everywhere: bool) -> dict[str, Any]:
    notice: dict[str, Any] = {
        "kind": "revoked",
        "user_id": identity.user_id,
        "jti": identity.jti,
        "everywhere": everywhere,
    }
    if everywhere:  # as RevocationStore.revoke_all: tokens issued up to this second
        notice["before"] = int(time.time()) + 1
    return notice


def disconnected_notice(user_id: str) -> dict[str, Any]:
    return {"kind": "disconnected", "user_id": user_id}


async def publish_notice(pubsub: PubSub, key_prefix: str, notice: dict[str, Any]) -> None:
    """Best effort: the session has ended in the records already; a socket that misses
    the notice still ends with its access token."""
    try:
        await pubsub.publish(sessions_channel(key_prefix), orjson.dumps(notice))
    except Exception:
        log.warning("session notice not published: %s", notice.get("kind"), exc_info=True)


class SessionWatch:
    def __init__(self, router: ChannelRouter, hub: Hub, key_prefix: str) -> None:
        self.router = router
        self.hub = hub
        self.channel = sessions_channel(key_prefix)

    async def start(self) -> None:
        self.router.route(self.channel, self._on_notice)
        await self.router.subscribe(self.channel)

    async def stop(self) -> None:
        self.router.unroute(self.channel, self._on_notice)
        await self.router.unsubscribe(self.channel)

    def _on_notice(self, _channel: str, message: bytes) -> None:
        try:
            notice = orjson.loads(message)
            user_id = str(notice["user_id"])
            kind = notice["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("malformed session notice")
            return
        for conn in self.hub.local(user_id):
            if kind == "disconnected":
                ended = True
            elif kind == "revoked" and notice.get("everywhere"):
                ended = conn.session_iat < int(notice.get("before", time.time() + 1))
            elif kind == "revoked":
                ended = conn.session_jti == notice.get("jti")
            else:
                ended = False
            if ended:
                conn.close(SESSION_ENDED)
