"""The social socket with wscat (npm `wscat`), as seed 003 tells its users to try it,
against the real `agora serve`: the welcome and the echo, the seed's refusal frame and
close code for a spent ticket, and a retry loop of spent tickets that never locks the
address out of its next valid ticket (issue 10 §1; docs/social.md §2)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.agora_command import Server, agora_env
from tests.support.services import service_unavailable
from tests.support.users import PASSWORD, unique_login

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
WSCAT = ROOT / "node_modules" / ".bin" / "wscat"
CONNECTIONS_PER_IP = 3
RETRIES = 8  # more than the connections allowed per IP


def wscat(url: str, *commands: str, wait: float = 1.0) -> str:
    """wscat as a user runs it, in a terminal (`script` gives it a pty: without one, wscat
    prints neither its prompts nor the close code): `wscat -c URL`, or with commands
    `wscat -c URL -x COMMAND... -w WAIT`. Everything it printed, without the escapes."""
    if shutil.which("node") is None or not WSCAT.exists():
        service_unavailable("wscat", FileNotFoundError("node_modules/.bin/wscat: run npm ci"))
    if shutil.which("script") is None:
        service_unavailable("script (util-linux)", FileNotFoundError("script"))
    args = [str(WSCAT), "--no-color", "-c", url]
    for command in commands:
        args += ["-x", command]
    if commands:
        args += ["-w", str(wait)]
    process = subprocess.Popen(
        ["script", "-qefc", shlex.join(args), "/dev/null"],
        stdin=subprocess.PIPE,  # kept open: at EOF wscat's prompt would quit at once
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stdout is not None and process.stdin is not None
    process.stdin.close()
    output = process.stdout.read().decode(errors="replace")
    process.stdout.close()
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("node") is None or not WSCAT.exists():
        service_unavailable("wscat", FileNotFoundError("node_modules/.bin/wscat: run npm ci"))
    data_dir = tmp_path_factory.mktemp("agora-wscat")
    env = agora_env(data_dir, AGORA_SOCIAL_CONNECTIONS_PER_IP=str(CONNECTIONS_PER_IP))
    running = Server(data_dir, env).start()
    try:
        yield running
    finally:
        running.stop_cleanly()


def access_token(server: Server) -> str:
    login = unique_login("wscat")
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        created = http.post(
            "/auth/api/register",
            json={"login": login, "password": PASSWORD, "email": f"{login}@x.org", "name": login},
        )
        assert created.status_code == 201, created.text
        response = http.post("/auth/api/login", json={"login": login, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])


def ticket(server: Server, token: str) -> str:
    response = httpx.get(
        f"{server.base_url}/social/api/socials/connect-token",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def socket_url(server: Server, ticket: str) -> str:
    return server.base_url.replace("http", "ws", 1) + f"/social/api/socials/ws?token={ticket}"


def test_wscat_retry_loop_with_a_spent_ticket_never_locks_the_address_out(
    server: Server,
) -> None:
    token = access_token(server)
    spent = ticket(server, token)
    first = wscat(socket_url(server, spent), '{"type":"chat","content":"Hello!"}')
    assert '"type":"connected"' in first and "Welcome to Social WebSocket!" in first, first
    assert '"type":"echo","content":"Hello!"' in first, first
    # A shell loop retrying with the spent ticket (once 12 s old, it is an expired one).
    refusals = {"Token already used": 4409, "Invalid or expired token": 4401}
    for _ in range(RETRIES):
        again = wscat(socket_url(server, spent))
        said = [m for m in refusals if f'< {{"type":"error","message":"{m}"}}' in again]
        assert len(said) == 1, again
        reason = said[0]
        assert f'Disconnected (code: {refusals[reason]}, reason: "{reason}")' in again, again
    fresh = wscat(socket_url(server, ticket(server, token)), '{"type":"chat","content":"back"}')
    assert "Welcome to Social WebSocket!" in fresh, fresh
    assert '"type":"echo","content":"back"' in fresh, fresh
