"""Which app each `agora serve SERVICE` runs, and the one place services are assembled.

`service_app` builds one service's FastAPI app on given backends; `build_app` builds
what a process serves: every service on shared backends (`all`, the embedded app), or
one service on backends of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.runtime.backends import build_backends, build_messaging_adapters
from agora.runtime.process import ProcessApp
from agora.runtime.web_client import WebClient, web_dist
from agora.services.auth.app import create_app as create_auth_app
from agora.services.messaging.app import create_app as create_messaging_app
from agora.services.publications.app import create_app as create_publications_app
from agora.services.social.app import create_app as create_social_app
from agora.web.service_app import ServiceApp

ServiceFactory = Callable[[Settings, Backends], ServiceApp]


def _messaging(settings: Settings, backends: Backends) -> ServiceApp:
    return create_messaging_app(settings, backends, build_messaging_adapters(settings, backends))


SERVICES: dict[str, ServiceFactory] = {
    "auth": create_auth_app,
    "publications": create_publications_app,
    "social": create_social_app,
    "messaging": _messaging,
}
ALL = "all"
NAMES = (ALL, *SERVICES)


def service_app(name: str, settings: Settings, backends: Backends) -> ServiceApp:
    """One service's app on `backends`, which the caller starts and closes."""
    return SERVICES[name](settings, backends)


def build_app(name: str, settings: Settings, backends: Backends | None = None) -> ProcessApp:
    """What one process serves. Backends passed in stay the caller's to close."""
    if name != ALL and name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(NAMES)}")
    shared = backends or build_backends(settings)
    names = list(SERVICES) if name == ALL else [name]
    apps = [service_app(each, settings, shared) for each in names]
    # The browser app at / when every service is here (make run), if it was built.
    dist = web_dist(settings) if name == ALL else None
    web_client = WebClient(dist, hsts=settings.cookie_secure) if dist is not None else None
    return ProcessApp(apps, shared, owns_backends=backends is None, web_client=web_client)
