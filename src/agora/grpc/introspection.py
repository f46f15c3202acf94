"""What gRPC tools expect of any server: reflection and the standard health service.

- Server reflection (grpcio-reflection): `grpcurl list`, `grpcurl describe`, Postman
  and Evans discover the services and their messages without the .proto files.
- `grpc.health.v1.Health` (grpcio-health-checking): load balancers, Kubernetes' gRPC
  probes and `grpc_health_probe` ask `Check` (or `Watch`) whether the server, "", or
  one of its services, by full name, is SERVING. Every served service is SERVING
  while the server runs; at shutdown they all turn NOT_SERVING before the grace period,
  so a balancer stops sending new calls while the in-flight ones finish.

Which services a server hosts is whatever its registrars added: `ServiceNames`
records the names as the generated `add_*Servicer_to_server` functions register them,
so the list can never drift from what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


class ServiceNames:
    """Stands in for the server while the registrars run; keeps each service's name.

    The generated code calls `add_generic_rpc_handlers` and then
    `add_registered_method_handlers(name, handlers)`; both are passed on unchanged.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.names: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
        self.names.append(name)
        self._server.add_registered_method_handlers(name, handlers)

    def as_server(self) -> grpc.aio.Server:
        return cast(grpc.aio.Server, self)


class Introspection:
    """Reflection and health for one server, given the names of the services it hosts."""

    def __init__(self, server: grpc.aio.Server, services: Sequence[str]) -> None:
        self.services = list(services)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self.services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )

    async def serving(self) -> None:
        for name in ("", *self.services, health.SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stopping(self) -> None:
        """Every service NOT_SERVING, and `Watch` streams told so (before the grace)."""
        await self.health.enter_graceful_shutdown()
