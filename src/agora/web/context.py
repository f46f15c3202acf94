"""`ServiceContext`: what every service app is assembled with, one typed object.

`build_service_app` makes it and keeps it on the app (`ServiceApp.context`); routes reach
its parts through the dependencies in `agora.web.deps`, a service's `create_app` reads
it while it assembles the service's own objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.audit import Audit
from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.security.guard import TokenGuard
from agora.security.revocation import RevocationStore
from agora.security.tokens import TokenService


@dataclass(frozen=True, slots=True)
class ServiceContext:
    name: str
    settings: Settings
    # Owned by the runtime, which starts and closes them (shared by the embedded app).
    backends: Backends
    audit: Audit
    tokens: TokenService
    revocations: RevocationStore
    # The token check in front of every protected route, RPC and socket ticket.
    guard: TokenGuard
    # The public paths the service answers; the embedded app and nginx route on them.
    path_prefixes: tuple[str, ...]
