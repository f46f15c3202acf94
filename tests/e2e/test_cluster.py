"""`agora cluster`, the real command as a child process: two instances of each service
behind nginx on a fresh PostgreSQL database (migrated by the command), a Redis namespace
and AMQP names of the test's own; then SIGTERM, and no child may be left."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.agora_command import run_agora
from tests.e2e.gateway import require_nginx
from tests.e2e.processes import Deployment, base_env
from tests.support.databases import empty_postgres_database
from tests.support.net import free_port
from tests.support.services import require_rabbitmq, require_redis
from tests.support.users import PASSWORD, unique_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

START_SECONDS = 60.0


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc), at this moment."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = {int(c) for c in (task / "children").read_text().split()}
                todo.extend(children - found)
                found |= children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def cluster_command(root: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`agora cluster ARGS` on a fresh database of its own, output in root/out.log."""
    redis_url, amqp_url = require_redis(), require_rabbitmq()
    require_nginx()
    with empty_postgres_database("cluster") as url:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        names = Deployment(root, url, dsn, redis_url, amqp_url)
        out = root / "out.log"
        with out.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "agora.cli", "cluster", *args],
                env=names.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            yield process, out
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            names.cleanup()


def wait_for_gateway(process: subprocess.Popen[str], out: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        text = out.read_text()
        for line in text.splitlines():
            if "gateway at " in line:
                return line.rsplit("gateway at ", 1)[1].strip()
        assert process.poll() is None, f"agora cluster exited with {process.returncode}:\n{text}"
        time.sleep(0.2)
    pytest.fail(f"no gateway within {START_SECONDS}s:\n{out.read_text()}")


def test_cluster_serves_through_nginx_and_stops_every_child(tmp_path: Path) -> None:
    port = free_port()
    args = ("--instances", "2", "--free-ports", "--listen", f"127.0.0.1:{port}")
    with cluster_command(tmp_path, *args) as (process, out):
        url = wait_for_gateway(process, out)
        assert url == f"http://127.0.0.1:{port}"
        children = descendants(process.pid)
        # 8 instances, nginx's master and its worker
        assert len(children) >= 10, (children, out.read_text())
        text = out.read_text()
        assert "migrate         | database is at the latest revision" in text
        for service in ("auth", "publications", "social", "messaging"):
            assert f"{service}.2 at http://127.0.0.1:" in text, text

        with httpx.Client(base_url=url, timeout=10) as client:
            login = unique_login("cluster")
            registered = client.post(
                "/auth/api/register",
                json={"login": login, "password": PASSWORD, "email": f"{login}@example.com",
                      "name": login},
            )  # fmt: skip
            assert registered.status_code == 201, registered.text
            logged = client.post("/auth/api/login", json={"login": login, "password": PASSWORD})
            assert logged.status_code == 200, logged.text
            headers = {"Authorization": f"Bearer {logged.json()['token']}"}
            deadline = time.monotonic() + 15  # the `connected` event crosses RabbitMQ
            while (listed := client.get("/api/publications", headers=headers)).status_code != 200:
                assert time.monotonic() < deadline, listed.text
                time.sleep(0.2)
            assert listed.json()["publications"] == []
            ticket = client.get("/social/api/socials/connect-token", headers=headers)
            assert ticket.status_code == 200 and ticket.json()["success"] is True, ticket.text
            conversations = client.get("/api/v1/conversations", headers=headers)
            assert conversations.status_code == 200, conversations.text

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, out.read_text()
        left = [pid for pid in children if alive(pid)]
        assert left == [], out.read_text()
        assert "cluster         | stopped" in out.read_text()


def test_a_process_dying_at_start_stops_the_cluster(tmp_path: Path) -> None:
    """auth.1 on deploy/README.md's port 8101, taken here: the command exits 1, and the
    instances that did start are stopped."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # taken by someone else already: same effect
            taken.bind(("127.0.0.1", 8101))
            taken.listen()
        args = ("--instances", "0", "--instances", "auth=1", "--listen", f"127.0.0.1:{free_port()}")
        with cluster_command(tmp_path, *args) as (process, out):
            assert process.wait(timeout=60) == 1, out.read_text()
            text = out.read_text()
            assert "error: auth.1 exited with" in text, text
            assert "gateway at" not in text


def test_cluster_refuses_without_the_real_backends(tmp_path: Path) -> None:
    done = run_agora("cluster", env=base_env(tmp_path), timeout=30)
    assert done.returncode == 1
    assert "set AGORA_DATABASE_URL, AGORA_REDIS_URL, AGORA_AMQP_URL" in done.stdout
