"""One grpc.aio server per process, hosting the servicers of the services it runs.

A service app lists what it serves over gRPC in `app.grpc_servicers`: callables that
add one servicer to a server (`Registrar`). The process's lifespan then runs one
`GrpcServer` on `settings.grpc_host:grpc_port` with all of them: the embedded app
(every service in one process) hosts auth's UserService and messaging's
MessagingService on one port; `agora serve auth` hosts only auth's.
Every server also hosts server reflection and `grpc.health.v1.Health`
(`grpc/introspection.py`), so grpcurl and health probes work on any of them.
`AGORA_GRPC_PORT=0` means no gRPC server at all. `GrpcServer(host, 0, ...)` (as the
tests do) binds an ephemeral port and reports it in `.port`.

SO_REUSEPORT (gRPC's default on Linux) is off unless `agora serve --workers N` asked for
several workers: otherwise a second server on the same port (a forgotten dev server)
would silently share the traffic instead of failing to start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import grpc

from agora.core.settings import Settings
from agora.grpc.introspection import Introspection, ServiceNames
from agora.grpc.malformed import MalformedRequests

log = logging.getLogger("agora.grpc")

Registrar = Callable[[grpc.aio.Server], None]

# Set by `agora serve --workers N` (N > 1): every worker serves the same gRPC port.
REUSE_PORT_ENV = "AGORA_GRPC_REUSE_PORT"
# Requests are small (a message is at most a few KiB, a batch 500 ids); refuse big ones.
MAX_RECEIVE_BYTES = 1024 * 1024


class GrpcBindError(RuntimeError):
    pass


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    def __init__(
        self,
        host: str,
        port: int,
        registrars: Sequence[Registrar],
        *,
        reuse_port: bool = False,
        grace: float = 2.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.registrars = list(registrars)
        self.reuse_port = reuse_port
        self.grace = grace
        self.port: int | None = None  # bound port, once started
        self._server: grpc.aio.Server | None = None
        self._introspection: Introspection | None = None
        self.services: list[str] = []  # the full names of the services it hosts, once started

    @property
    def target(self) -> str:
        """What a client dials, once started."""
        if self.port is None:
            raise RuntimeError("gRPC server not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        host = "::1" if host == "::" else host
        return address(host, self.port)

    async def start(self) -> int:
        server = grpc.aio.server(
            interceptors=[MalformedRequests()],  # no DecodeError class names to clients
            options=[
                ("grpc.so_reuseport", 1 if self.reuse_port else 0),
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ],
        )
        recorder = ServiceNames(server)
        for register in self.registrars:
            register(recorder.as_server())
        introspection = Introspection(server, recorder.names)
        self.services = recorder.names
        where = address(self.host, self.requested_port)
        try:
            port = server.add_insecure_port(where)
        except RuntimeError as exc:
            raise GrpcBindError(
                f"gRPC cannot listen on {where} (in use?); set AGORA_GRPC_PORT (0 turns gRPC off)"
            ) from exc
        if port == 0:  # older grpcio report a failed bind this way
            raise GrpcBindError(f"gRPC cannot listen on {where}")
        await server.start()
        await introspection.serving()
        self._server = server
        self._introspection = introspection
        self.port = port
        log.info("gRPC listening", extra={"address": address(self.host, port)})
        return port

    async def stop(self) -> None:
        if self._introspection is not None:
            await self._introspection.stopping()
        if self._server is not None:
            await self._server.stop(self.grace)
        self._server = None
        self._introspection = None
        self.port = None


def process_server(settings: Settings, registrars: Sequence[Registrar]) -> GrpcServer | None:
    """The process's server per settings; None when gRPC is off or nothing to serve."""
    if settings.grpc_port == 0 or not registrars:
        return None
    return GrpcServer(
        settings.grpc_host,
        settings.grpc_port,
        registrars,
        reuse_port=os.environ.get(REUSE_PORT_ENV) == "1",
    )
