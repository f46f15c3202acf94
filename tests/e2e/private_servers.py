"""Servers of a test's own, for the fault tests that stop them: a `redis-server` and a
RabbitMQ node with their own ports, data and logs. The machine's shared Redis and
RabbitMQ, which every other run uses, are never stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.net import free_port
from tests.support.services import RUN_ID, service_unavailable

START_SECONDS = 40.0


def wait_sync(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.1)


class PrivateRedis:
    """`redis-server` on a free port, no persistence: killed and restarted by a test."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_unavailable("redis-server (for a private Redis)", FileNotFoundError())
        self.binary = str(binary)
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.root)]  # fmt: skip
        with (self.root / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_sync(answers, 10, f"private redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class PrivateRabbitMQ:
    """A RabbitMQ node of a test's own (own name, ports, data and logs), stopped and
    restarted by the test; the machine's shared broker is never touched."""

    def __init__(self, root: Path) -> None:
        # As root, the packaged wrapper would switch to the `rabbitmq` user, who cannot
        # write our temporary directory: call the real scripts beside it.
        scripts = Path("/usr/lib/rabbitmq/bin")
        server = scripts / "rabbitmq-server"
        ctl = scripts / "rabbitmqctl"
        if not (server.exists() and ctl.exists()):
            found_server, found_ctl = shutil.which("rabbitmq-server"), shutil.which("rabbitmqctl")
            if not (found_server and found_ctl):
                service_unavailable("rabbitmq-server (for a private node)", FileNotFoundError())
            server, ctl = Path(str(found_server)), Path(str(found_ctl))
        self.server, self.ctl = str(server), str(ctl)
        self.root = root
        self.node = f"agora_{RUN_ID}_{uuid.uuid4().hex[:6]}@localhost"
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOME": str(root),  # the Erlang cookie, shared by the node and rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.ctl, "-n", self.node, "-q", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self) -> PrivateRabbitMQ:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("")
        subprocess.run(
            [self.server, "-detached"], env=self.env, timeout=30, check=True, capture_output=True
        )
        # await_startup fails at once while the node has not registered with epmd yet.
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._ctl("await_startup", "--timeout", "20", timeout=30).returncode == 0:
                return self
            time.sleep(0.3)
        self.stop()
        log = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.root.glob("log/*.log"))
        service_unavailable(
            "private RabbitMQ node", TimeoutError(f"not up in {START_SECONDS}s\n{log}")
        )
        raise AssertionError("unreachable")  # service_unavailable always raises

    def stop(self) -> None:
        """`rabbitmqctl stop`, which returns once the node has halted; SIGKILL if not."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._ctl("stop", timeout=30)
        pid_file = self.root / "rabbitmq.pid"
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        cmdline = Path(f"/proc/{pid}/cmdline")
        # Only our own node: the pid file may outlive it, and its pid be reused.
        with contextlib.suppress(OSError):
            if pid.isdigit() and self.node.encode() in cmdline.read_bytes():
                os.kill(int(pid), signal.SIGKILL)
