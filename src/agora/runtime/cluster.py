"""`agora cluster`: the deployment of deploy/README.md, on one machine, in one command.

N `agora serve SERVICE` processes per service on the real backends named by the
environment (AGORA_DATABASE_URL, AGORA_REDIS_URL, AGORA_AMQP_URL), behind one nginx on
deploy/nginx/agora.conf rendered with their addresses (runtime/nginx.py, the renderer the
gateway tests use too). In order: `agora db upgrade`; every instance at once, each
waited for until it is ready (`/readyz`); then nginx, and the gateway's URL is printed.

Nothing is restarted. A child that dies while the cluster starts stops everything
(exit 1). One that dies later is reported, and the others keep serving, as in a real
deployment that lost an instance; the cluster exits 1 when it ends, or at once if nginx
or every instance is gone. SIGINT or SIGTERM stops nginx, then every instance (each
gracefully, SIGKILL after children.STOP_SECONDS). The children's lifecycle and output:
runtime/children.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agora.runtime import nginx
from agora.runtime.children import Child, ChildFailed, Output, wait_ready

# runtime/registry.SERVICES in deploy/README.md's order (a unit test keeps them equal);
# not imported from there, so that this supervisor does not load every service.
SERVICES = ("auth", "publications", "social", "messaging")
GRPC_SERVICES = ("auth", "messaging")  # each instance serves gRPC on a port of its own
REQUIRED = ("AGORA_DATABASE_URL", "AGORA_REDIS_URL", "AGORA_AMQP_URL")


class ClusterError(Exception):
    """The cluster cannot start; its processes are already stopped."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def layout_port(service: str, number: int, *, grpc: bool = False) -> int:
    """deploy/README.md's ports: auth 8101, 8102, ..., publications 8201...; gRPC 50101..."""
    return (50000 if grpc else 8000) + 100 * (SERVICES.index(service) + 1) + number


@dataclass
class Instance(Child):
    """One `agora serve SERVICE --port PORT` (name: `auth.1`)."""

    service: str = ""
    port: int = 0
    grpc_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """The processes of one cluster. `counts`: instances per service (0: its paths
    answer 502); `env`: every child's environment; `port`: nginx's, on 127.0.0.1 (or
    `host`); `free_ports`: instances on ports the OS picks instead of the README's."""

    counts: Mapping[str, int]
    env: Mapping[str, str]
    workdir: Path
    port: int = 8080
    host: str = "127.0.0.1"
    free_ports: bool = False
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    python: str = sys.executable
    instances: dict[str, Instance] = field(default_factory=dict, init=False)
    gateway: Child | None = field(default=None, init=False)
    stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(SERVICES)
        if unknown:
            raise ClusterError(f"unknown service {sorted(unknown)}; choose from {SERVICES}")
        self.output = Output(self.stream)
        self.prefix = self.workdir.resolve() / "nginx"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def agora(self, *args: str) -> list[str]:
        return [self.python, "-m", "agora.cli", *args]

    def of(self, service: str) -> list[Instance]:
        return [each for each in self.instances.values() if each.service == service]

    # --- starting ------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, start the instances, then nginx. ClusterError after stopping all."""
        missing = [name for name in REQUIRED if not self.env.get(name)]
        if missing:
            raise ClusterError(f"set {', '.join(missing)}: a cluster runs on the real backends")
        try:
            self._migrate()
            self._plan()
            for instance in self.instances.values():
                instance.spawn()
            wait_ready(list(self.instances.values()), self.stopping)
            self.gateway = self._gateway()
            self.gateway.spawn()
            wait_ready([self.gateway], self.stopping)
        except ChildFailed as failed:
            self.stop()
            raise ClusterError(str(failed)) from None
        for instance in self.instances.values():
            grpc = f", gRPC {instance.grpc_port}" if instance.grpc_port else ""
            self.output.say(f"{instance.name} at {instance.url} (pid {instance.pid}{grpc})")
        self.output.say(f"nginx logs in {self.prefix / 'logs'}")
        self.output.say(f"gateway at {self.url}")

    def _migrate(self) -> None:
        migrate = Child("migrate", self.agora("db", "upgrade"), dict(self.env), self.output, "")
        migrate.spawn()
        migrate.wait(timeout=120)
        if migrate.exit_code() != 0:
            raise ChildFailed(f"agora db upgrade exited with {migrate.exit_code()}")

    def _plan(self) -> None:
        for service in SERVICES:
            for number in range(1, self.counts.get(service, 0) + 1):
                port = free_port() if self.free_ports else layout_port(service, number)
                grpc_port = None
                if service in GRPC_SERVICES:
                    grpc_port = (
                        free_port() if self.free_ports else layout_port(service, number, grpc=True)
                    )
                self.instances[f"{service}.{number}"] = self._instance(
                    service, number, port, grpc_port
                )

    def _instance(self, service: str, number: int, port: int, grpc_port: int | None) -> Instance:
        env = dict(self.env)
        if grpc_port is not None:
            env["AGORA_GRPC_PORT"] = str(grpc_port)
        auth = [each.grpc_port for each in self.instances.values() if each.service == "auth"]
        if service == "messaging" and not env.get("AGORA_USERS_GRPC_TARGET") and auth:
            # Every auth instance: gRPC's pick_first moves to the next when one is down.
            env["AGORA_USERS_GRPC_TARGET"] = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in auth)
        name = f"{service}.{number}"
        command = self.agora("serve", service, "--host", "127.0.0.1", "--port", str(port))
        url = f"http://127.0.0.1:{port}/readyz"
        return Instance(name, command, env, self.output, url, service=service, port=port,
                        grpc_port=grpc_port)  # fmt: skip

    def _gateway(self) -> Child:
        binary = nginx.find_nginx()
        if binary is None:
            raise ChildFailed("nginx is not installed (apt-get install nginx)")
        upstreams = {service: [each.address for each in self.of(service)] for service in SERVICES}
        http_config = nginx.render(
            f"{self.host}:{self.port}", upstreams, access_log=self.prefix / "logs" / "access.log"
        )
        self.prefix.mkdir(parents=True, exist_ok=True)
        config = self.prefix / "nginx.conf"
        config.write_text(nginx.standalone(http_config, self.prefix))
        checked = nginx.check(binary, config, self.prefix)
        if checked.returncode != 0:
            raise ChildFailed(f"nginx -t refused {config}:\n{checked.stderr}")
        command = [binary, "-p", str(self.prefix), "-c", str(config), "-g", "daemon off;"]
        return Child("nginx", command, dict(self.env), self.output, f"{self.url}/")

    # --- running and stopping ------------------------------------------------------------

    def children(self) -> list[Child]:
        gateway = [] if self.gateway is None else [self.gateway]
        return [*gateway, *self.instances.values()]

    def supervise(self) -> int:
        """Until `stopping` is set (a signal) or nothing is left to serve: reports every
        child that exits, restarts none. 0 if none died, else 1."""
        reported: set[str] = set()
        while not self.stopping.wait(0.2):
            for child in self.children():
                if child.name not in reported and not child.running():
                    reported.add(child.name)
                    self.output.say(f"{child.name} exited with {child.exit_code()}; not restarted")
            gateway_gone = self.gateway is not None and self.gateway.name in reported
            if gateway_gone or all(not each.running() for each in self.instances.values()):
                self.output.say("nothing left to serve: stopping")
                return 1
        return 1 if reported else 0

    def stop(self) -> None:
        """nginx first (no new requests), then every instance at once (they drain)."""
        if self.gateway is not None:
            self.gateway.signal(signal.SIGQUIT)  # nginx's graceful stop
            self.gateway.wait()
        for instance in self.instances.values():
            instance.signal(signal.SIGTERM)
        for instance in self.instances.values():
            instance.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[Cluster]:
        """Started, then stopped (the tests' way in)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


def run(cluster: Cluster) -> int:
    """The command: start, supervise until SIGINT/SIGTERM, stop. Its exit status."""

    def on_signal(_number: int, _frame: object) -> None:
        cluster.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            cluster.start()
        except ClusterError as error:
            cluster.output.say(f"error: {error}")
            return 1
        code = cluster.supervise()
        cluster.output.say("stopping")
        cluster.stop()
        cluster.output.say("stopped")
        return code
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- the command line (`agora cluster`, added to cli.py's parser) -----------------------


def _counts(values: list[str] | None) -> dict[str, int]:
    counts = dict.fromkeys(SERVICES, 2)
    for value in values or []:
        service, _, number = value.rpartition("=")
        if not number.isdigit() or (service and service not in SERVICES):
            raise SystemExit(f"error: --instances {value}: expected N or SERVICE=N, with "
                             f"SERVICE one of {', '.join(SERVICES)}")  # fmt: skip
        for each in [service] if service else SERVICES:
            counts[each] = int(number)
    return counts


def _cmd_cluster(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"error: --listen {args.listen}: expected [HOST:]PORT")
    data_dir = Path(os.environ.get("AGORA_DATA_DIR") or "var")
    cluster = Cluster(
        _counts(args.instances),
        dict(os.environ),
        args.workdir or data_dir / "cluster",
        port=int(port),
        host=host or "127.0.0.1",
        free_ports=args.free_ports,
    )
    raise SystemExit(run(cluster))


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="N instances of each service behind nginx, on this machine (deploy/README.md)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    cluster.add_argument(
        "--instances",
        action="append",
        metavar="N|SERVICE=N",
        help="instances per service (2 by default); SERVICE=N for one service, 0 for none; "
        "repeatable",
    )
    cluster.add_argument(
        "--listen", default="127.0.0.1:8080", help="[HOST:]PORT nginx listens on (127.0.0.1:8080)"
    )
    cluster.add_argument(
        "--free-ports",
        action="store_true",
        help="instances on ports the OS picks, not deploy/README.md's 8101, 8102, ...",
    )
    cluster.add_argument(
        "--workdir",
        type=Path,
        help="nginx's config, pid and logs (default: $AGORA_DATA_DIR/cluster)",
    )
    cluster.set_defaults(func=_cmd_cluster)
