"""Start the real `agora` command as a child process and talk to it over HTTP.

Each server gets a free port, its own data directory and a low argon2 cost; cookies
are not Secure so that httpx's cookie jar keeps them over plain http. Stopping a
server sends SIGINT, as Ctrl-C would, and expects exit status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port
from tests.support.users import PASSWORD, unique_login

AGORA = Path(sys.executable).with_name("agora")
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0


def agora_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        AGORA_ENV="dev",
        AGORA_DATA_DIR=str(data_dir),
        AGORA_ARGON2_TIME_COST="1",
        AGORA_ARGON2_MEMORY_COST="64",
        AGORA_ARGON2_PARALLELISM="1",
        AGORA_REGISTER_IP_MAX_ATTEMPTS="100000",  # every test user comes from 127.0.0.1
        # Tests register users several at a time: the register lane (1 hash at once) queues
        # them rather than answering 503 (the lane itself: tests/security/test_registration.py).
        AGORA_PASSWORD_REGISTER_QUEUE="256",
        AGORA_COOKIE_SECURE="false",
        AGORA_LOG_LEVEL="WARNING",
        AGORA_GRPC_PORT="0",  # 50051 is one per machine; a test wanting gRPC picks a port
    )
    env.update(overrides)
    return env


def run_agora(
    *args: str, env: Mapping[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One `agora` command to completion (users create, db upgrade, a refused serve)."""
    return subprocess.run(
        [str(AGORA), *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    """A running `agora serve`; `stop()` is Ctrl-C and returns the exit status."""

    data_dir: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"server-{self.port}.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self) -> Server:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(AGORA), "serve", *self.args, "--port", str(self.port)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"agora serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                httpx.get(f"{self.base_url}/auth/api/me", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        pytest.fail(f"agora serve did not answer within {STARTUP_SECONDS}s:\n{self.log()}")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"agora serve ignored SIGINT for {STOP_SECONDS}s:\n{self.log()}")

    def stop_cleanly(self) -> None:
        code = self.stop()
        assert code == 0, f"agora serve exited with {code} on SIGINT:\n{self.log()}"
        assert "Traceback" not in self.log(), self.log()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- HTTP, as a client does it -----------------------------------------------------


def register(client: httpx.Client, login: str | None = None) -> dict[str, str]:
    login = login or unique_login("e2e")
    response = client.post(
        "/auth/api/register",
        json={"login": login, "password": PASSWORD, "email": f"{login}@example.com",
              "name": f"Name of {login}"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def login(client: httpx.Client, login: str, password: str = PASSWORD) -> str:
    response = client.post("/auth/api/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token
