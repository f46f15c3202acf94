"""Node and the npm packages of package.json, for the tests that drive a foreign client.

A missing runtime or package skips the test with the reason, or fails it under
AGORA_REQUIRE_SERVICES=1 (CI installs both).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tests.support.services import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "tests" / "js"


def require_node(*packages: str) -> str:
    """The `node` executable, with `packages` installed in node_modules."""
    node = shutil.which("node")
    if node is None:
        service_unavailable("Node", FileNotFoundError("node is not on PATH"))
    for package in packages:
        if not (ROOT / "node_modules" / package / "package.json").exists():
            service_unavailable(f"npm {package}", FileNotFoundError("run npm ci"))
    assert node is not None
    return node


async def run_script(node: str, script: str, *args: str, timeout: float = 60) -> str:
    """Run tests/js/<script> with `args`; its stdout, or an AssertionError with stderr."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPTS / script),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode()
