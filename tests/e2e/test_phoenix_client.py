"""The real phoenix.js (npm `phoenix`, under Node, with the `ws` package as its transport)
against the real `agora serve` (issue 10 §1, docs/messaging.md §3): both serializers,
Presence with two devices per user, a message reaching the other user's `user:` channel,
reconnects with fresh tickets and an exact catch-up, and a client stuck with a spent
ticket backing off without locking its address out. The scenarios are in
tests/js/phoenix_client.mjs; each prints one JSON result that the tests check here."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.agora_command import Server, agora_env, run_agora
from tests.support.services import service_unavailable
from tests.support.users import PASSWORD, unique_login

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "phoenix_client.mjs"
STALE_SECONDS = 10
MISSED, MISSED_CHARS = 1000, 1000


@dataclass
class User:
    id: str
    token: str


def node() -> str:
    path = shutil.which("node")
    if path is None:
        service_unavailable("node", FileNotFoundError("node"))
    for package in ("phoenix", "ws"):
        if not (ROOT / "node_modules" / package / "package.json").exists():
            service_unavailable(
                "npm packages", FileNotFoundError(f"node_modules/{package}: run npm ci")
            )
    assert path is not None
    return path


def run_scenario(scenario: str, config: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    done = subprocess.run(
        [node(), str(SCRIPT), scenario],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, f"{scenario} failed:\n{done.stderr}\n{done.stdout}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def new_user(http: httpx.Client) -> User:
    login = unique_login("phx")
    created = http.post(
        "/auth/api/register",
        json={"login": login, "password": PASSWORD, "email": f"{login}@example.com", "name": login},
    )
    assert created.status_code == 201, created.text
    response = http.post("/auth/api/login", json={"login": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return User(str(created.json()["id"]), response.json()["token"])


def direct(http: httpx.Client, alice: User, bob: User) -> str:
    response = http.post(
        "/api/v1/conversations",
        json={"kind": "direct", "user_id": bob.id},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert response.status_code in (200, 201), response.text
    conversation_id: str = response.json()["id"]
    return conversation_id


def config(server: Server, *users: User, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "users": [{"id": user.id, "token": user.token} for user in users],
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    node()
    data_dir = tmp_path_factory.mktemp("agora-phoenix")
    running = Server(data_dir, agora_env(data_dir)).start()
    try:
        yield running
    finally:
        running.stop_cleanly()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_a_message_reaches_the_other_users_channel(
    server: Server, http: httpx.Client, vsn: str
) -> None:
    alice, bob = new_user(http), new_user(http)
    conversation_id = direct(http, alice, bob)
    result = run_scenario(
        "chat", config(server, alice, bob, conversation_id=conversation_id, vsn=vsn), 60
    )
    assert result["sent"]["text"] == f"hello over {vsn}"
    assert [m["id"] for m in result["received"]] == [result["sent"]["id"]]
    assert result["heartbeat"]["payload"] == {"status": "ok", "response": {}}
    bob_frames = result["frames"]["bob"]
    pushes = [f for f in bob_frames if f["event"] == "message:new"]
    replies = [
        f for f in bob_frames if f["event"] == "phx_reply" and f["topic"].startswith("user:")
    ]
    if vsn == "2.0.0":
        # Replies carry the join's join_ref, and so do the pushes of the joined topic.
        assert {f["join_ref"] for f in replies} == {result["bob_join_ref"]}
        assert {f["join_ref"] for f in pushes} == {result["bob_join_ref"]}
        state = next(f for f in bob_frames if f["event"] == "presence_state")
        assert state["join_ref"] == result["bob_join_ref"]
    else:  # 1.0.0 objects, as Phoenix's V1 serializer: no join_ref at all
        assert all("join_ref" not in f for f in bob_frames), bob_frames


def test_presence_with_two_devices_per_user(server: Server, http: httpx.Client) -> None:
    alice, bob = new_user(http), new_user(http)
    conversation_id = direct(http, alice, bob)
    result = run_scenario(
        "presence", config(server, alice, bob, conversation_id=conversation_id), 90
    )
    labels = [step["label"] for step in result["steps"]]
    assert labels == [
        "alice alone",
        "bob's phone",
        "bob's laptop too",
        "bob's phone gone",
        "bob gone",
    ]
    # Each of alice's devices saw bob join once and leave once, whatever his devices did.
    for device in ("alice_phone", "alice_laptop"):
        assert result["events"][device]["user"] == {"joins": [bob.id], "leaves": [bob.id]}
        conversation = result["events"][device]["conversation"]
        assert conversation["joins"].count(bob.id) == 1
        assert conversation["leaves"] == [bob.id]
    both = result["steps"][2]["lists"]
    assert both["bob_laptop"]["user"] == [f"{alice.id}:1"]
    assert both["alice_phone"]["conversation"] == sorted([f"{alice.id}:1", f"{bob.id}:1"])


def test_reconnect_with_fresh_tickets_catches_up_exactly(
    server: Server, http: httpx.Client
) -> None:
    alice, bob = new_user(http), new_user(http)
    conversation_id = direct(http, alice, bob)
    result = run_scenario(
        "reconnect", config(server, alice, bob, conversation_id=conversation_id), 60
    )
    assert result["opens"] >= 2
    tickets = result["tickets"]
    # Every open used a ticket of its own (a refused attempt may reuse the last one).
    assert len(set(tickets)) >= 2
    assert result["recovered"] is True
    assert result["caught_up"] == [2, 3, 4]  # exactly what was missed
    assert result["seqs"] == [1, 2, 3, 4, 5]


def test_a_thousand_long_missed_messages_stream_to_phoenix_js(
    server: Server, http: httpx.Client
) -> None:
    """1,000 messages of 1,000 characters (over a megabyte: more than the outbound queue
    holds, so more than one join reply could) reach phoenix.js in order (issue 13)."""
    alice, bob = new_user(http), new_user(http)
    conversation_id = direct(http, alice, bob)
    for n in range(MISSED):
        sent = http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"client_id": f"s-{n}", "text": f"{n:05d} " + "y" * (MISSED_CHARS - 6)},
            headers={"Authorization": f"Bearer {bob.token}"},
        )
        assert sent.status_code == 201, sent.text
    result = run_scenario("stream", config(server, alice, conversation_id=conversation_id), 120)
    assert result["recovered"] is True and result["streamed"] == MISSED
    assert result["in_reply"] == 0 and result["batches"] > 1
    assert result["done"]["streamed"] == MISSED and result["done"]["last_seq"] == MISSED
    assert result["events_after_batches"] == ["sync:done", "message:new"]
    assert result["seqs"] == list(range(1, MISSED + 2))


def test_a_stale_ticket_client_backs_off_and_never_locks_its_address_out(
    tmp_path: Path,
) -> None:
    """With 6 openings allowed per IP and minute, a stuck phoenix.js (refused with 403 at
    each handshake, so its backoff grows) tries a dozen times in 10 s; none of it counts,
    and a fresh ticket from the same address still connects."""
    env = agora_env(tmp_path, AGORA_MESSAGING_CONNECTIONS_PER_IP="6")
    stale_server = Server(tmp_path, env).start()
    try:
        with httpx.Client(base_url=stale_server.base_url, timeout=10) as http:
            alice = new_user(http)
        result = run_scenario(
            "stale", config(stale_server, alice, seconds=STALE_SECONDS), STALE_SECONDS + 40
        )
    finally:
        stale_server.stop_cleanly()
    print(f"stale phoenix.js client over {STALE_SECONDS} s: {result}")
    # phoenix.js's backoff: 10, 50, 100, 150, 200, 250, 500, 1000, 2000, then 5000 ms.
    assert 5 <= result["attempts"] <= 15, result
    assert result["errors"] >= result["attempts"] - 1
    assert result["fresh_connected"] is True


def doc_example() -> str:
    """The phoenix.js example of docs/messaging.md §3.4, as a reader copies it."""
    text = (ROOT / "docs" / "messaging.md").read_text()
    after = text.split("<!-- phoenix-example:", 1)[1]
    return after.split("```js\n", 1)[1].split("```", 1)[0]


def read_lines_until(process: subprocess.Popen[str], want: str, seconds: float) -> list[str]:
    """The example's output lines up to the first holding `want`."""
    assert process.stdout is not None
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                continue
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if want in line:
                return lines
    pytest.fail(f"the example never printed {want!r}; it printed {lines}")


def test_the_documented_phoenix_example_runs(
    server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    alice, bob = new_user(http), new_user(http)
    conversation_id = direct(http, alice, bob)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    script = tmp_path / "example.mjs"
    script.write_text(doc_example())
    env = {**os.environ, "AGORA_URL": server.base_url, "AGORA_TOKEN": alice.token}
    process = subprocess.Popen(
        [node(), str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        read_lines_until(process, '"online"', 20)  # joined: Presence synced
        sent = http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"client_id": "doc-1", "text": "from the docs"},
            headers={"Authorization": f"Bearer {bob.token}"},
        )
        assert sent.status_code == 201, sent.text
        read_lines_until(process, "from the docs", 20)
    finally:
        process.kill()
        process.wait()


@pytest.mark.postgres
def test_a_burst_of_pushes_is_stored_in_push_order_on_postgresql(
    throwaway_postgres: str, tmp_path: Path
) -> None:
    """phoenix.js pushes 40 messages without waiting, then a read up to the last: the
    server runs the sends side by side (each waits for PostgreSQL twice), yet their seqs
    follow the pushes, and the read is handled after them (docs/messaging.md §3.3)."""
    env = agora_env(tmp_path, AGORA_DATABASE_URL=throwaway_postgres)
    upgraded = run_agora("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    running = Server(tmp_path, env).start()
    try:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            alice, bob = new_user(http), new_user(http)
            conversation_id = direct(http, alice, bob)
            result = run_scenario(
                "burst", config(running, alice, conversation_id=conversation_id, count=40)
            )
    finally:
        running.stop_cleanly()
    assert result["seqs"] == list(range(1, 41))
    assert result["receipt"]["read_seq"] == 40 and result["receipt"]["unread"] == 0
    assert result["answered"] == [f"send {i}" for i in range(40)] + ["read"]
