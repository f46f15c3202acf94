"""The messaging service: REST under /api/v1, the socket at /socket/websocket, gRPC.

One `MessagingService` decides for all three doors; this module assembles it from the
adapters `agora.runtime` chose (`MessagingAdapters`):

- users: auth's UserService over gRPC (`AGORA_USERS_GRPC_TARGET`), else read in this
  process's database (the embedded app, or messaging sharing auth's database);
- media: files under `AGORA_MEDIA_DIR` (default `<data_dir>/media`), or a media service
  of the deployment's own (`AGORA_MEDIA_URL`);
- notifications for members with no live device: a log line, or a webhook
  (`AGORA_NOTIFY_URL`);
- real-time events: the socket fan-out, across instances through the PubSub port.
"""

from __future__ import annotations

from agora.core.settings import Settings
from agora.grpc.auth import GrpcAuthenticator
from agora.ports.backends import Backends
from agora.services.messaging.grpc_api import messaging_service
from agora.services.messaging.http.media_routes import upload_body_limits
from agora.services.messaging.http.routes import router
from agora.services.messaging.ports import MessagingAdapters
from agora.services.messaging.rate_limits import MessagingLimits
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.socket.wiring import build_messaging_realtime
from agora.web.app import build_service_app
from agora.web.service_app import ServiceApp

PATH_PREFIXES = ("/api/v1/", "/socket/")
SOCKET_PATH = "/socket/websocket"


def create_app(settings: Settings, backends: Backends, adapters: MessagingAdapters) -> ServiceApp:
    # The hooks run at startup, once the objects below exist.
    async def start() -> None:
        await realtime.start()

    async def stop() -> None:
        await realtime.stop()
        await adapters.close()

    app = build_service_app(
        name="messaging",
        settings=settings,
        backends=backends,
        routers=[router],
        path_prefixes=PATH_PREFIXES,
        on_start=[start],
        on_stop=[stop],
        body_limits=upload_body_limits(settings),
    )
    context = app.context
    realtime = build_messaging_realtime(
        settings,
        backends,
        tokens=context.tokens,
        revocations=context.revocations,
        audit=context.audit,
        refresh_keys=context.guard.refresh_keys,
        service_getter=lambda: service,
    )
    service = MessagingService(
        db=backends.database,
        users=adapters.users,
        media=adapters.media,
        events=realtime.fanout,
        notifier=adapters.notifier,
        limits=MessagingLimits(backends.cache, settings, context.audit, backends.counters),
        audit=context.audit,
        settings=settings,
    )
    app.provide(service)
    app.grpc_servicers = [
        messaging_service(service, GrpcAuthenticator(context.guard, context.audit))
    ]
    app.workers.update(realtime.workers)
    app.add_socket_route(SOCKET_PATH, realtime.socket.handle)
    return app
