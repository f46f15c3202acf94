"""What anonymous refusals make us write: audit bytes per 1,000 tokenless requests.

    .venv/bin/python -m bench.audit_bench [--requests 1000] [--path-bytes 65000] [--sources 1]

Every service in one process on SQLite (a fresh database per row), requests over ASGI
(no network: what is measured is bytes written, not time). Each request is a `GET` with
no token on a protected route whose path is `--path-bytes` long (the issue's 65 KB), from
`--sources` client addresses taking turns. Written bytes are:

    table   the `audit_events` rows of the run: the JSON `data` plus the other columns
    log     the `agora.audit` and `agora.access` lines, as the JSON formatter writes them

Rows, in the same run:

    naive       the baseline, as before issue 11 §3: one full row and one audit line
                per refusal, fields untruncated (the bounding turned off in process)
    truncated   one row per refusal, every field bounded (256 characters)
    aggregated  bounded, and past 10 refusals per source, reason and minute only a count
                (the default: AGORA_AUDIT_REFUSAL_DETAIL_PER_MINUTE=10)

and the ratio of each to `naive`. The access line (one per request, bounded) is part of
"log" in every row: it is what a deployment keeps for any request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select

import agora.core.audit
import agora.web.access_log
from agora.adapters.audit_database import AuditEvent
from agora.core.logs import JsonFormatter
from agora.core.settings import Settings
from agora.db.migrate import upgrade
from agora.runtime.embedded import create_embedded_app
from bench.charts import after_run
from bench.harness import machine, write_results

ROWS = ("naive", "truncated", "aggregated")


@contextmanager
def counted_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("agora.audit", "agora.access")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield stream
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.propagate = True


@contextmanager
def unbounded(on: bool) -> Iterator[None]:
    """The naive baseline: no field cut (what every entry was before)."""
    saved = agora.core.audit.bounded, agora.web.access_log.bounded
    if on:
        agora.core.audit.bounded = agora.web.access_log.bounded = lambda value, *a: value  # type: ignore[assignment]
    try:
        yield
    finally:
        agora.core.audit.bounded, agora.web.access_log.bounded = saved


async def measure(row: str, requests: int, path_bytes: int, sources: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"audit-bench-{row}-"))
    url = f"sqlite+aiosqlite:///{directory / 'agora.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        env="test",
        data_dir=directory,
        database_url=url,
        jwt_secret=SecretStr("bench-secret-bench-secret-bench-secret-0123456789"),
        grpc_port=0,
        audit_refusal_detail_per_minute=10 if row == "aggregated" else 10**9,
    )  # type: ignore[call-arg]
    app = create_embedded_app(settings)
    path = "/api/publications/" + "A" * path_bytes
    with unbounded(row == "naive"), counted_lines() as lines:
        async with app.running():
            clients = [
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=(f"203.0.113.{n + 1}", 4000)),
                    base_url="http://bench",
                )
                for n in range(sources)
            ]
            for n in range(requests):
                response = await clients[n % sources].get(path)
                assert response.status_code == 401, response.status_code
            for client in clients:
                await client.aclose()
            database = app.apps[0].context.backends.database
        # The app has stopped: the counts of the last minute are written.
        async with database.sessions() as session:
            table = await session.scalar(
                select(
                    func.coalesce(
                        func.sum(
                            func.length(AuditEvent.data)
                            + func.length(AuditEvent.event)
                            + func.length(AuditEvent.service)
                            + func.coalesce(func.length(AuditEvent.user_id), 0)
                            + 8  # id
                            + 26  # at
                        ),
                        0,
                    )
                )
            )
            rows = await session.scalar(select(func.count()).select_from(AuditEvent))
        await database.close()
        log = len(lines.getvalue().encode())
    scale = 1000 / requests
    return {
        "row": row,
        "rows": rows,
        "table_bytes_per_1000": round(int(table or 0) * scale),
        "log_bytes_per_1000": round(log * scale),
    }


async def main(requests: int, path_bytes: int, sources: int) -> None:
    results = [await measure(row, requests, path_bytes, sources) for row in ROWS]
    naive = results[0]
    total = naive["table_bytes_per_1000"] + naive["log_bytes_per_1000"]
    print(f"{requests} tokenless GETs, {path_bytes}-byte paths, {sources} source(s)")
    print(f"{'row':<11} {'rows':>6} {'table B/1000':>14} {'log B/1000':>14} {'total / naive':>14}")
    for result in results:
        both = result["table_bytes_per_1000"] + result["log_bytes_per_1000"]
        result["ratio_to_naive"] = round(both / total, 5)
        print(
            f"{result['row']:<11} {result['rows']:>6} {result['table_bytes_per_1000']:>14,}"
            f" {result['log_bytes_per_1000']:>14,} {result['ratio_to_naive']:>14.5f}"
        )
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(results, indent=2))
    for result in results:  # the chart's bar: what one row costs in all
        result["bytes_per_1000"] = result["table_bytes_per_1000"] + result["log_bytes_per_1000"]
    path = write_results("audit", {
        "benchmark": "audit", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"requests": requests, "path_bytes": path_bytes, "sources": sources},
        "machine": machine(), "rows": results,
        "ratios": {f"{r['row']} / {naive['row']}": r["ratio_to_naive"] for r in results[1:]},
    })  # fmt: skip
    print(f"results: {path}")
    after_run(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--path-bytes", type=int, default=65_000)
    parser.add_argument("--sources", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.path_bytes, arguments.sources))
