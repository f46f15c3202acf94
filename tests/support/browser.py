"""Node scripts driving Debian's Chromium through playwright-core (tests/js/).

Missing node, Chromium or the npm package skips the test with the reason, or fails it
under AGORA_REQUIRE_SERVICES=1 (CI installs all three: .ci/run, `npm ci`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.support.services import service_unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tests" / "js"
CHROMIUM = os.environ.get("AGORA_TEST_CHROMIUM", "/usr/bin/chromium")


def require_chromium() -> str:
    """The node executable, once node, Chromium and playwright-core are all there."""
    node = shutil.which("node")
    if node is None:
        service_unavailable("node", FileNotFoundError("node is not on PATH"))
    if not os.access(CHROMIUM, os.X_OK):
        service_unavailable("Chromium", FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)"))
    if not (REPO / "node_modules" / "playwright-core" / "package.json").exists():
        service_unavailable("playwright-core", FileNotFoundError("node_modules: run `npm ci`"))
    assert node is not None
    return node


async def run_script(node: str, script: str, argument: Any, timeout: float = 180) -> Any:
    """Run tests/js/<script> with one JSON argument; its stdout, parsed as JSON."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPTS / script),
        json.dumps(argument),
        cwd=REPO,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"{script} failed ({process.returncode}):\n{err.decode()}"
    return json.loads(out)
