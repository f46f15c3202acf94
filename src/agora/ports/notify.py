"""Notification port: tells users who are not connected that something happened.

Messaging calls it after storing a message, for the members with no live messaging
device (they would otherwise learn of it only when they reconnect). What "telling" means
is the deployment's: a push gateway, an e-mail digest service, ...

Backends: `adapters.log_notifier.LogNotifier` (the embedded default: one structured log
line per user, nothing is sent anywhere) and `adapters.webhook_notifier.WebhookNotifier`
(POSTs each notification as JSON to `AGORA_NOTIFY_URL`). `tests/contract/
test_notify_contract.py` is the contract.

A notification is best effort: `notify` never raises (a failure is logged), so a down
notification service never fails or delays a send beyond the backend's timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Notifier(Protocol):
    async def notify(self, user_ids: Sequence[str], notification: dict[str, Any]) -> None:
        """Tell each of `user_ids` about `notification` (a JSON-ready dict, e.g.
        `{"type": "message", "conversation_id", "message_id", "author_id", "preview"}`).
        Does nothing for an empty `user_ids`. Never raises."""

    async def close(self) -> None:
        """Release connections; `notify` is not called after."""
