"""The Redis load of presence per 1,000 online users, at the default TTL and at one that
would bound ghost presence under 15 s (issue 15 §8, docs/operations.md).

    .venv/bin/python -m bench.presence_load [--users 1000] [--rounds 20] [--redis URL]

Joins `--users` users (one device each) with `adapters.presence_redis.RedisPresence` in a
namespace of its own on the real Redis, then runs `--rounds` refreshes of all of them
(what each instance does every TTL/3) and `--rounds` rechecks (`online` of the same
users, what an instance does every recheck interval for the users its sockets watch),
and reads Redis's `INFO commandstats` around each: commands and Redis time per refresh
and per recheck. Those are the same whatever the TTL; the rows multiply them by each
setting's frequency, so the ratio of a row to the defaults' is the load it adds.
Counts are exact; Redis time is this machine's (shared Redis: other clients' commands
of the same names are counted too, so run it on a quiet Redis for the time column).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from agora.adapters.presence_redis import RedisPresence
from bench.harness import write_results

WRITES = ("cmdstat_zadd", "cmdstat_pexpire")
SCRIPT = "cmdstat_evalsha"

# (row, presence TTL, recheck interval): the refresh runs every TTL/3.
SETTINGS = (
    ("defaults", 24.0, 15.0),
    ("under 15 s", 10.0, 4.0),
)


async def commandstats(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    info: dict[str, Any] = await client.info("commandstats")
    return {name: (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], rounds: int
) -> dict[str, tuple[float, float]]:
    """Per round: (calls, usec) of each command that ran."""
    out = {}
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            out[name] = ((calls - calls0) / rounds, (usec - usec0) / rounds)
    return out


async def measure(url: str, users: int, rounds: int) -> dict[str, Any]:
    namespace = f"bench-presence-{uuid.uuid4().hex[:8]}:"
    presence = RedisPresence(url, namespace=namespace)
    client = aioredis.Redis.from_url(url)
    devices = [(f"user-{n}", f"device-{n}") for n in range(users)]
    user_ids = [user for user, _ in devices]
    try:
        for user, device in devices:
            await presence.join(user, device, 24.0)
        before = await commandstats(client)
        for _ in range(rounds):
            await presence.refresh(devices, 24.0)
        refresh = delta(before, await commandstats(client), rounds)
        before = await commandstats(client)
        for _ in range(rounds):
            assert len(await presence.online(user_ids)) == users
        recheck = delta(before, await commandstats(client), rounds)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
        if keys:
            await client.delete(*keys)
        await presence.close()
        await client.aclose()
    return {"refresh": refresh, "recheck": recheck}


def rows(per: dict[str, Any], users: int) -> list[dict[str, Any]]:
    refresh, recheck = per["refresh"], per["recheck"]
    writes = sum(refresh.get(name, (0.0, 0.0))[0] for name in WRITES)
    scripts = refresh.get(SCRIPT, (0.0, 0.0))[0]
    refresh_usec = refresh.get(SCRIPT, (0.0, 0.0))[1]
    recheck_reads = recheck.get(SCRIPT, (0.0, 0.0))[0]
    recheck_usec = recheck.get(SCRIPT, (0.0, 0.0))[1]
    out = []
    for name, ttl, recheck_interval in SETTINGS:
        every = ttl / 3
        out.append(
            {
                "row": name,
                "ttl": ttl,
                "refresh_every": round(every, 2),
                "recheck_every": recheck_interval,
                "ghost_bound": ttl + recheck_interval,
                "scripts_per_s": scripts / every * 1000 / users,
                "writes_per_s": writes / every * 1000 / users,
                "refresh_redis_ms_per_s": refresh_usec / every / 1000 * 1000 / users,
                "recheck_reads_per_s": recheck_reads / recheck_interval * 1000 / users,
                "recheck_redis_ms_per_s": recheck_usec / recheck_interval / 1000 * 1000 / users,
            }
        )
    base = out[0]
    for row in out:
        row["writes_ratio"] = row["writes_per_s"] / base["writes_per_s"]
        row["recheck_ratio"] = row["recheck_reads_per_s"] / base["recheck_reads_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    per = asyncio.run(measure(args.redis, args.users, args.rounds))
    table = rows(per, args.users)
    print(f"per refresh of {args.users} users: {per['refresh']}")
    print(f"per recheck of {args.users} users: {per['recheck']}")
    print("per 1,000 online users (one device each) and 1,000 watched users:")
    for row in table:
        print(
            f"  {row['row']:<11} TTL {row['ttl']:>4.0f} s, refresh {row['refresh_every']:>5.2f} s, "
            f"recheck {row['recheck_every']:>4.0f} s (ghost <= {row['ghost_bound']:.0f} s): "
            f"{row['scripts_per_s']:.0f} scripts/s, {row['writes_per_s']:.0f} writes/s "
            f"(x{row['writes_ratio']:.2f}), {row['refresh_redis_ms_per_s']:.2f} ms/s; recheck "
            f"{row['recheck_reads_per_s']:.0f} reads/s (x{row['recheck_ratio']:.2f}), "
            f"{row['recheck_redis_ms_per_s']:.2f} ms/s"
        )
    path = write_results("presence_load", {"args": vars(args), "per": per, "rows": table})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
