"""The idle sweeper: a background task that disconnects users idle too long.

Every instance of the service runs one. That is safe because a sweep is one
conditional UPDATE (`status = 'connected' AND last_activity_at < cutoff`): two
instances sweeping at once each change, and so uncache and audit, disjoint sets of
users (see `UserStatusRepository.disconnect_idle`). Each swept user is announced on
the sessions channel, so that their open sockets close too (agora.realtime.sessions).
"""

from __future__ import annotations

import asyncio
import logging

from agora.core.background import cancel_and_wait, running
from agora.ports.pubsub import PubSub
from agora.realtime.sessions import disconnected_notice, publish_notice
from agora.services.publications.status.service import UserStatusService

log = logging.getLogger("agora.publications.sweeper")


class IdleSweeper:
    def __init__(
        self, status: UserStatusService, interval: float, sessions: PubSub, key_prefix: str
    ) -> None:
        self.status = status
        self.interval = interval
        self.sessions = sessions
        self.key_prefix = key_prefix
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="publications-idle-sweeper")

    @property
    def alive(self) -> bool:
        return running(self._task)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                swept = await self.status.sweep_idle()
            except Exception:  # a database blip must not end the sweeper for good
                log.exception("idle sweep failed; trying again next interval")
                continue
            if swept:
                log.info("disconnected %d idle users", len(swept))
            for user_id in swept:
                await publish_notice(self.sessions, self.key_prefix, disconnected_notice(user_id))
