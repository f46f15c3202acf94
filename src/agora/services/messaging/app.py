"""The messaging service: REST under /api/v1, the socket at /socket/websocket, gRPC.

One `MessagingService` decides for all three doors; this module only builds it and its
ports from the settings:

- users: auth's UserService over gRPC (`AGORA_USERS_GRPC_TARGET`), else read in this
  process's database (the embedded app, or messaging sharing auth's database);
- media: files under `AGORA_MEDIA_DIR` (default `<data_dir>/media`), or a media service
  of the deployment's own (`AGORA_MEDIA_URL`);
- notifications for members with no live device: a log line, or a webhook
  (`AGORA_NOTIFY_URL`);
- real-time events: the socket fan-out, across instances through the PubSub port.
"""

from __future__ import annotations

from fastapi import FastAPI

from agora.adapters.media_disk import DiskMediaStore
from agora.adapters.media_http import HttpMediaStore
from agora.adapters.notify_log import LogNotifier
from agora.adapters.notify_webhook import WebhookNotifier
from agora.runtime.backends import Backends
from agora.ports.media import MediaStore
from agora.ports.notify import Notifier
from agora.services.messaging.grpc_api import messaging_service
from agora.services.messaging.rate_limits import MessagingLimits
from agora.services.messaging.http.media_routes import upload_body_limits
from agora.services.messaging.socket.wiring import build_messaging_realtime
from agora.services.messaging.http.routes import router
from agora.services.messaging.service.messages import MessagingService
from agora.services.messaging.users import GrpcUserDirectory, LocalUserDirectory, UserDirectory
from agora.core.settings import Settings
from agora.web.app import build_service_app

PATH_PREFIXES = ("/api/v1/", "/socket/")
SOCKET_PATH = "/socket/websocket"


def user_directory(settings: Settings, backends: Backends) -> UserDirectory:
    if settings.users_grpc_target:
        return GrpcUserDirectory(
            settings.users_grpc_target,
            deadline=settings.users_grpc_deadline,
            retries=settings.users_grpc_retries,
        )
    return LocalUserDirectory(backends.database)


def media_store(settings: Settings) -> MediaStore:
    if settings.media_url:
        token = settings.media_token.get_secret_value() if settings.media_token else None
        return HttpMediaStore(settings.media_url, token=token)
    return DiskMediaStore(settings.resolved_media_dir)


def notifier(settings: Settings) -> Notifier:
    if settings.notify_url:
        return WebhookNotifier(settings.notify_url)
    return LogNotifier()


def create_app(settings: Settings, backends: Backends | None = None) -> FastAPI:
    # The hooks run at startup, once the objects below exist.
    async def start() -> None:
        await realtime.start()

    async def stop() -> None:
        await realtime.stop()
        await notifications.close()
        await media.close()
        await users.close()

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
    resolved: Backends = app.state.backends
    users = user_directory(settings, resolved)
    notifications = notifier(settings)
    media = media_store(settings)
    realtime = build_messaging_realtime(
        settings,
        resolved,
        tokens=app.state.tokens,
        revocations=app.state.revocations,
        audit=app.state.audit,
        refresh_keys=app.state.token_guard.refresh_keys,
        service_getter=lambda: service,
    )
    service = MessagingService(
        db=resolved.database,
        users=users,
        media=media,
        events=realtime.fanout,
        notifier=notifications,
        limits=MessagingLimits(resolved.cache, settings, app.state.audit),
        audit=app.state.audit,
        settings=settings,
    )
    app.state.messaging = service
    app.state.messaging_realtime = realtime
    app.state.grpc_servicers = [messaging_service(app)]
    app.add_socket_route(SOCKET_PATH, realtime.socket.handle)
    return app
