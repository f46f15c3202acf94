"""Notifications POSTed to a webhook: `AGORA_NOTIFY_URL`.

One request per `notify` call, JSON body `{"user_ids": [...], "notification": {...}}`;
any 2xx is success. Best effort, as the port says: a timeout, a refused connection or
an error status is logged (`agora.notify`) and dropped, never raised, and never retried
(a late notification for a message the user has already read is worse than none).
One `httpx.AsyncClient` is kept for the notifier's life (connections reused).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

log = logging.getLogger("agora.notify")


class WebhookNotifier:
    def __init__(self, url: str, timeout: float = 2.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("notify url must be http:// or https://")
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def notify(self, user_ids: Sequence[str], notification: dict[str, Any]) -> None:
        if not user_ids:
            return
        try:
            body = orjson.dumps({"user_ids": list(user_ids), "notification": notification})
        except TypeError:  # a caller's bug; logged loudly, still not the sender's failure
            log.exception("notification is not JSON", extra={"url": self.url})
            return
        try:
            response = await self._client.post(
                self.url, content=body, headers={"content-type": "application/json"}
            )
        except (httpx.HTTPError, OSError) as exc:
            log.warning(
                "notification webhook unreachable",
                extra={"url": self.url, "error": repr(exc), "users": len(user_ids)},
            )
            return
        if not response.is_success:
            log.warning(
                "notification webhook refused",
                extra={"url": self.url, "status": response.status_code, "users": len(user_ids)},
            )

    async def close(self) -> None:
        await self._client.aclose()
