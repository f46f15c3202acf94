"""Which app each `agora serve SERVICE` runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agora.runtime.backends import Backends
from agora.core.settings import Settings

AppFactory = Callable[[Settings, Backends | None], Any]


def service_factories() -> dict[str, AppFactory]:
    from agora.runtime.embedded import create_embedded_app
    from agora.services.auth.app import create_app as auth
    from agora.services.messaging.app import create_app as messaging
    from agora.services.publications.app import create_app as publications
    from agora.services.social.app import create_app as social

    return {
        "all": create_embedded_app,
        "auth": auth,
        "publications": publications,
        "social": social,
        "messaging": messaging,
    }
