"""The embedded notifier: a log line per user, and nothing else.

Honest about what it is: no user is reached. It lets a single-process deployment see
who would have been notified (`agora.notify` logger, one JSON line per user with the
notification under `notification`) and stands in until `AGORA_NOTIFY_URL` points at a
real notification service (`adapters.webhook_notifier`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("agora.notify")


class LogNotifier:
    async def notify(self, user_ids: Sequence[str], notification: dict[str, Any]) -> None:
        for user_id in user_ids:
            log.info(
                "notification not delivered (log only)",
                extra={"user_id": user_id, "notification": notification},
            )

    async def close(self) -> None:
        return None
