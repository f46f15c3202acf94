"""Every service in one process, on shared backends: what `make run` serves."""

from __future__ import annotations

from agora.core.settings import Settings
from agora.ports.backends import Backends
from agora.runtime.process import ProcessApp
from agora.runtime.registry import ALL, build_app


def create_embedded_app(settings: Settings, backends: Backends | None = None) -> ProcessApp:
    return build_app(ALL, settings, backends)
