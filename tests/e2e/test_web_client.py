"""The web client (web/, issue 14) in Debian's Chromium through playwright-core, against
a live `agora serve` serving the built app at /. The scenario is tests/js/web_client.mjs
(two users in two browser contexts: register, login, a direct conversation, a message
each way within a second, typing, presence, unread counts, a tab offline while 5
messages arrive, reload, publications, logout ending the other tab, axe-core); here its
measurements are checked again. Skipped with the reason when node, Chromium,
playwright-core or the built app is missing (`make test` builds it), failing under
AGORA_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.agora_command import Server, agora_env, register
from tests.support.browser import require_chromium, run_script
from tests.support.services import service_unavailable
from tests.support.users import PASSWORD, unique_login

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
# The committed screenshots are refreshed on demand only (AGORA_WEB_SCREENSHOTS=docs/screenshots),
# so that a test run leaves the checkout as it found it.
SCREENSHOTS_VARIABLE = "AGORA_WEB_SCREENSHOTS"
WITHIN_MS = 1000  # issue 14: a message each way seen within a second


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not (DIST / "index.html").is_file():
        service_unavailable("web client build", FileNotFoundError("web/dist: run `make web`"))
    env = agora_env(tmp_path, AGORA_WEB_DIST_DIR=str(DIST))
    running = Server(tmp_path, env).start()
    try:
        yield running
    finally:
        running.stop_cleanly()


async def test_two_users_in_two_browsers(server: Server, tmp_path: Path) -> None:
    node = require_chromium()
    alice, bob = unique_login("alice"), unique_login("bob")
    with httpx.Client(base_url=server.base_url) as http:
        assert '<div id="app">' in http.get("/").text
        register(http, bob)
    screenshots = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path / "screenshots")
    screenshots.mkdir(parents=True, exist_ok=True)
    argument = {
        "base": server.base_url,
        "alice": alice,
        "bob": bob,
        "password": PASSWORD,
        "screenshots": str(screenshots),
    }
    result = await run_script(node, "web_client.mjs", argument, timeout=200)
    print("web client measurements:", result["latency_ms"], result["axe"])
    assert result["latency_ms"]["a_to_b"] < WITHIN_MS, result
    assert result["latency_ms"]["b_to_a"] < WITHIN_MS, result
    assert result["after_offline"][-5:] == [f"offline {n}" for n in range(1, 6)]
    assert len(result["after_offline"]) == len(set(result["after_offline"])) == 7
    assert result["axe"] and all(not found for found in result["axe"].values()), result["axe"]
    assert result["upload_progress"], result
    assert len(result["checks"]) == 22, result["checks"]
