"""What the social routes ask for besides the shared dependencies (`agora.web.deps`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from agora.realtime.hub import Hub
from agora.realtime.presence import PresenceTracker
from agora.realtime.tickets import TicketService
from agora.web.deps import from_app


@dataclass(frozen=True, slots=True)
class SocialServices:
    """The service's own objects, made by `create_app` (`ServiceApp.provide`); the
    socket endpoint gets its own at assembly."""

    tickets: TicketService
    hub: Hub  # every social socket of this instance
    presence: PresenceTracker


SocialServicesDep = Annotated[SocialServices, Depends(from_app(SocialServices))]
