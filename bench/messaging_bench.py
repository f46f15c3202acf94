"""Messaging (issue 6): send-to-delivery on every device of a 50-member conversation, against
the bare fan-out in the same run, and catch-up of 1,000 missed messages.

    .venv/bin/python -m bench.messaging_bench [--quick] [--rounds 3] [--pg-rounds 1]
        [--messages 500] [--members 50] [--senders 1,4] [--window 16] [--paced 100]
        [--catchup 1000] [--catchup-chars 320] [--reps 5] [--skip postgres,social]
        [--profile DIR] [--floor-seconds 10]

Servers, each its own process, one uvicorn worker, on a free 127.0.0.1 port:

    agora      `agora serve` (every service, embedded backends: SQLite, in-process cache
               and pub/sub), with the messaging limits (messages per user and per IP,
               socket connections per IP, frames per minute) raised to 10^9 through
               AGORA_MESSAGING_*: one IP and one sender would otherwise be blocked. The
               limiters still count every message and frame.
    bare       bench/socket_baselines.py:bare_app (Starlette, a room broadcast: no
               auth, no limits, no storage): the bare fan-out of issue 5
    agora-pg   (unless --skip postgres, and when the local PostgreSQL and Redis answer)
               the same `agora serve` on a throwaway PostgreSQL database and a Redis key
               namespace (cache, limits, pub/sub, presence), both removed at the end

Rows, each loaded from separate client processes (bench/messaging_clients.py):

    messaging  `--members` users, each with one device joined to `user:<id>`, are the
               members of one group; other devices of the first members (one row per
               count in `--senders`), joined to `conversation:<id>`, send `--messages`
               over the socket (`message:send`, `--window` un-acked each). Latency: from
               the send (a timestamp in the text) to the `message:new` push on each
               device; messages/s = messages / (first send to last delivery anywhere)
    paced      the same with one sender and one message at a time (`--paced`
               messages): the latency of a message that finds no queue
    bare       the same number of sockets in one room, one sender sending the same
               number of chat frames (16 un-acked): bench/social_bench.py's fan-out row
    social     the social socket's fan-out (realtime Hub) on the same Agora server:
               `--members` devices of one user, same sender
    catch-up   one device of a direct conversation is offline while `--catchup`
               messages of `--catchup-chars` characters are sent, then reconnects
               (ticket, socket, join with its last_seq and `stream: true`) and gets
               them all: the join reply, then `sync:batch` pushes up to `sync:done`
               (docs/messaging.md §3.4); timed `--reps` times, against paging the
               same messages over REST (`after=`, limit 100)

With agora-pg, the storage floor (bench/messaging_storage_floor.py: bare asyncpg, one
statement per message, `--floor-seconds`) runs on the same database once the agora-pg
server has stopped, and issue 13's targets are printed as reached or MISSED
(bench/targets.py).

Each fan-out row reports the server's CPU per delivery and what the rest of the
machine used meanwhile. Rounds alternate between the rows (`--rounds` on the embedded
server, `--pg-rounds` on PostgreSQL); each row reports its median round. `--quick`: one
round of 100 messages (50 paced), one sender, no social row, no PostgreSQL. JSON in
bench/results/. About 2 minutes on a quiet 2-core machine; `--quick` about 25 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import uvloop

from bench import messaging_clients as mc
from bench import messaging_storage_floor as storage_floor
from bench import targets
from bench.charts import after_run
from bench.harness import wait_for_idle, write_results
from bench.messaging_setup import (
    conversations,
    last_seq,
    postgres_available,
    postgres_database,
)
from bench.social_bench import (
    AGORA_ENV,
    BIG,
    Snapshot,
    Target,
    agora_server,
    baseline_server,
    loadavg,
    median_row,
    profiled,
    quantiles,
    ratio,
    redis_available,
    split,
    start,
    usage,
)

TICKET_PATH = "/social/api/socials/connect-token"  # the messaging socket takes the same tickets
MESSAGING_ENV = {
    "AGORA_MESSAGING_MESSAGES_PER_HOUR": BIG,
    "AGORA_MESSAGING_MESSAGES_PER_IP_PER_HOUR": BIG,
    "AGORA_MESSAGING_CONNECTIONS_PER_IP": BIG,
    "AGORA_MESSAGING_FRAMES_PER_MINUTE": BIG,
}
REST_PAGE = 100  # the largest page the REST route serves
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f} s] {text}", flush=True)


def spec(target: Target) -> dict[str, Any]:
    return {"base": target.base, "ticket_path": TICKET_PATH}


def messaging_jobs(
    target: Target, group_id: str, senders: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    members = list(range(args.members))
    jobs: list[dict[str, Any]] = [
        {"role": "receivers", "target": spec(target), "conversation_id": group_id,
         "tokens": [target.tokens[u] for u in part],
         "user_ids": [target.user_ids[u] for u in part], "messages": args.messages}
        for part in split(members, args.clients)
    ]  # fmt: skip
    run = uuid.uuid4().hex[:8]  # client ids are unique per run: a replay would store nothing
    jobs.append(
        {"role": "senders", "target": spec(target), "conversation_id": group_id,
         "tokens": [target.tokens[u] for u in range(senders)],
         "last_seq": last_seq(target, group_id), "window": args.window,
         "client_ids": [f"{run}-{i}" for i in range(args.messages)]}
    )  # fmt: skip
    return jobs


def baseline_jobs(target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    """bench/social_bench.py's fan-out: user 1's devices (a room for bare) get what user 0
    sends, one sender with 16 chat frames un-acked."""
    jobs: list[dict[str, Any]] = [
        {"role": "social-receivers", "target": target.spec(), "users": [1] * len(part),
         "messages": args.messages}
        for part in split(list(range(args.members)), args.clients)
    ]  # fmt: skip
    jobs.append(
        {"role": "social-sender", "target": target.spec(), "users": [0],
         "messages": args.messages, "to": target.recipient(1)}
    )  # fmt: skip
    return jobs


def fanout(
    target: Target, jobs: list[dict[str, Any]], label: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the jobs: deliveries/s from the first send to the last delivery anywhere."""
    load = loadavg()
    with mc.clients(jobs) as sync:
        go, _start_at, _deadline = start(sync, 0.0, 60.0)
        time.sleep(max(0.0, go - time.time()))
        row_name = label.removeprefix(f"{target.name} ").replace(" ", "-")
        with profiled(target, row_name, args.profile):
            before = Snapshot.take(target.pid)
            out = mc.results_of(sync, len(jobs), 90)
            after = Snapshot.take(target.pid)
    sender = next(r for r in out if "first" in r)
    if sender.get("errors"):
        raise RuntimeError(f"sends refused: {sender['errors']}")
    got = [r for r in out if "last" in r]
    latencies = [x for r in got for x in r["latencies"]]
    span = max(r["last"] for r in got) - sender["first"]
    used = usage(before, after, sum(r["cpu"] for r in out))
    rate = len(latencies) / span if span > 0 else None
    return {
        "deliveries_per_s": round(rate) if rate else None,
        "messages_per_s": round(rate / args.members, 1) if rate else None,
        "deliveries": len(latencies),
        "expected": args.messages * args.members,
        "acks": sender["acks"],
        **quantiles(latencies),
        "server_us_per_op": round(used["server_cpu_s"] / max(1, len(latencies)) * 1e6, 1),
        **used,
        "loadavg": load,
    }


async def catchup(target: Target, direct_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """User 1's device is away while user 0 sends `--catchup` messages, then comes back."""
    missed_from = last_seq(target, direct_id)
    topic = f"conversation:{direct_id}"
    async with httpx.AsyncClient(timeout=30) as http:
        sender = await mc.open_device(http, spec(target), target.tokens[0])
    await sender.call(topic, "phx_join", {"last_seq": missed_from})
    run = uuid.uuid4().hex[:8]
    before = Snapshot.take(target.pid)
    # Ordinary words up to the length asked (the send timestamp comes before them).
    words = (mc.FILL + " ") * (args.catchup_chars // len(mc.FILL) + 1)
    fill = words[: max(1, args.catchup_chars - 18)].rstrip()
    acks, errors = await mc.send_all(
        sender, topic, [f"{run}-{i}" for i in range(args.catchup)], args.window, fill
    )
    after = Snapshot.take(target.pid)
    sender.abort()
    if errors or acks != args.catchup:
        raise RuntimeError(f"catch-up fill: {acks} stored, refused: {errors[:3]}")
    who = (spec(target), target.tokens[1], direct_id, missed_from, args.catchup, args.reps)
    socket_rows = await mc.catchup_socket(*who)
    rest_rows = await mc.catchup_rest(*who, REST_PAGE)
    join = statistics.median(r["join_s"] for r in socket_rows)
    reconnect = statistics.median(r["reconnect_s"] for r in socket_rows)
    pages = statistics.median(r["pages_s"] for r in rest_rows)
    return {
        "missed": args.catchup,
        "chars": args.catchup_chars,
        "join_frames": socket_rows[0]["frames"],
        "join_reply_ms": round(join * 1000, 1),
        "reconnect_ms": round(reconnect * 1000, 1),
        "rest_pages_ms": round(pages * 1000, 1),
        "rest_requests": rest_rows[0]["requests"],
        "join_reply_bytes": socket_rows[0]["reply_bytes"],
        "rest_over_join": ratio(pages, join),
        "rest_over_reconnect": ratio(pages, reconnect),
        # Storing them (one socket, a direct conversation, the reader offline): the
        # send path alone, with its server CPU per message.
        "fill_messages_per_s": round(args.catchup / (after.at - before.at)),
        "fill_server_ms_per_message": round((after.server - before.server) / acks * 1000, 2),
        "fill_other_cores": usage(before, after, 0.0)["other_cores"],
        "socket_reps_ms": [round(r["join_s"] * 1000, 1) for r in socket_rows],
        "rest_reps_ms": [round(r["pages_s"] * 1000, 1) for r in rest_rows],
    }


# --- the run --------------------------------------------------------------------------------


def brief(row: dict[str, Any]) -> str:
    return (
        f"{row['messages_per_s']:>8} msg/s {row['deliveries_per_s']:>7} deliveries/s "
        f"({row['deliveries']}/{row['expected']})  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms"
        f"  server {row['server_cores']} cores ({row['server_us_per_op']} us/delivery)"
        f"  clients {row['client_cores']}  other {row['other_cores']}"
    )


def measured(
    raw: dict[str, list[dict[str, Any]]], label: str, round_no: int, row: dict[str, Any]
) -> None:
    raw.setdefault(label, []).append(row)
    say(f"round {round_no + 1} {label:22} {brief(row)}")


def configuration(
    name: str, args: argparse.Namespace, bare: Target | None, extra_env: dict[str, str],
    redis: bool = False,
) -> dict[str, Any]:  # fmt: skip
    raw: dict[str, list[dict[str, Any]]] = {}
    with agora_server(name, args.members, redis=redis, extra_env=extra_env) as agora:
        group_id, direct_id = conversations(agora, args.members)
        say(f"{name}: up, {args.members} users registered, group and direct conversation made")
        rounds = args.rounds if bare is not None else args.pg_rounds
        for n in range(rounds):  # the rows take turns in each round
            if bare is not None:
                measured(raw, "bare", n, fanout(bare, baseline_jobs(bare, args), "bare", args))
            if "social" not in args.skip:
                label = f"{name} social"
                measured(raw, label, n, fanout(agora, baseline_jobs(agora, args), label, args))
            for senders in args.senders:
                label = f"{name} messaging x{senders}"
                jobs = messaging_jobs(agora, group_id, senders, args)
                measured(raw, label, n, fanout(agora, jobs, label, args))
            if args.paced:  # one message at a time: the latency without a queue
                label = f"{name} messaging paced"
                paced = argparse.Namespace(**{**vars(args), "messages": args.paced, "window": 1})
                jobs = messaging_jobs(agora, group_id, 1, paced)
                measured(raw, label, n, fanout(agora, jobs, label, paced))
        caught = uvloop.run(catchup(agora, direct_id, args))
    say(
        f"{name} catch-up of {caught['missed']} x {caught['chars']} chars: streamed in "
        f"{caught['join_frames']} frames ({caught['join_reply_bytes']} bytes) "
        f"{caught['join_reply_ms']} ms, "
        f"reconnect + join {caught['reconnect_ms']} ms, REST {caught['rest_requests']} pages "
        f"{caught['rest_pages_ms']} ms ({caught['rest_over_join']}x the join reply); "
        f"stored at {caught['fill_messages_per_s']}/s, "
        f"{caught['fill_server_ms_per_message']} ms server CPU each"
    )
    return {
        "fanout": {label: median_row(rows, "deliveries_per_s") for label, rows in raw.items()},
        "all_rounds": raw,
        "catchup": caught,
    }


def summary(configs: dict[str, dict[str, Any]], senders: list[int]) -> dict[str, Any]:
    """Per configuration and sender count: the median rounds, and their ratios to the bare
    fan-out (same sockets, one sender) and the social fan-out of the same server."""
    bare = configs.get("agora", {}).get("fanout", {}).get("bare", {})
    out: dict[str, Any] = {}
    for name, config in configs.items():
        rows = config["fanout"]
        social = rows.get(f"{name} social", {})
        for count in senders:
            messaging = rows[f"{name} messaging x{count}"]
            out[f"{name} x{count}"] = {
                "messages_per_s": messaging["messages_per_s"],
                "p50_ms": messaging["p50_ms"],
                "p99_ms": messaging["p99_ms"],
                "over_bare": ratio(messaging["deliveries_per_s"], bare.get("deliveries_per_s")),
                "over_social": ratio(messaging["deliveries_per_s"], social.get("deliveries_per_s")),
                "server_us_per_delivery": messaging["server_us_per_op"],
            }
        paced = rows.get(f"{name} messaging paced")
        if paced:
            out[f"{name} paced"] = {
                "messages_per_s": paced["messages_per_s"],
                "p50_ms": paced["p50_ms"],
                "p99_ms": paced["p99_ms"],
            }
        out[f"{name} catch-up"] = {
            key: config["catchup"][key]
            for key in ("join_reply_ms", "reconnect_ms", "rest_pages_ms", "rest_over_join")
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one small round: about 25 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-rounds", type=int, default=1, help="rounds on PostgreSQL")
    parser.add_argument("--messages", type=int, default=500, help="messages per fan-out row")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument(
        "--senders", default="1,4", help="sending sockets: one messaging row per count"
    )
    parser.add_argument("--window", type=int, default=16, help="un-acked sends per socket")
    parser.add_argument(
        "--paced", type=int, default=100, help="messages of the one-at-a-time row (0: none)"
    )
    parser.add_argument("--catchup", type=int, default=1000, help="missed messages")
    parser.add_argument(
        "--catchup-chars", type=int, default=320, help="characters per missed message"
    )
    parser.add_argument("--reps", type=int, default=5, help="catch-up repetitions")
    parser.add_argument("--clients", type=int, default=2, help="receiving processes")
    parser.add_argument("--idle-wait", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="comma list: postgres, social")
    parser.add_argument("--profile", type=str, help="py-spy the Agora rows into this folder")
    parser.add_argument(
        "--floor-seconds", type=float, default=10,
        help="the storage floor's run beside the agora-pg rows (0: none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    args.senders = [int(n) for n in args.senders.split(",")]
    if args.quick:
        args.rounds, args.messages, args.reps, args.idle_wait = 1, 100, 2, 0.0
        args.paced = 50
        args.senders = args.senders[:1]
        args.skip |= {"postgres", "social"}
    if args.profile:
        from pathlib import Path

        args.profile = Path(args.profile)

    began = time.time()
    busy = wait_for_idle(args.idle_wait)
    say(f"machine busy before the run: {busy} cores, load {loadavg()}")
    configs: dict[str, dict[str, Any]] = {}
    with baseline_server("bare", 2) as bare:
        configs["agora"] = configuration("agora", args, bare, MESSAGING_ENV)
    floor = None
    if "postgres" not in args.skip and postgres_available() and redis_available():
        with postgres_database() as url:
            env = {**MESSAGING_ENV, "AGORA_DATABASE_URL": url}
            configs["agora-pg"] = configuration("agora-pg", args, None, env, redis=True)
            if args.floor_seconds > 0:  # the agora-pg server is stopped by now
                floor = storage_floor.measure(url, args.floor_seconds)
                say(storage_floor.describe(floor, None))
    report = {
        "bench": "messaging",
        "at": datetime.now(UTC).isoformat(),
        "seconds_total": round(time.time() - began, 1),
        "args": {**vars(args), "skip": sorted(args.skip)},
        "machine": {"hostname": socket.gethostname(), "nproc": os.cpu_count(),
                    "python": sys.version.split()[0], "busy_cores_before": busy},
        "agora_env": {**AGORA_ENV, **MESSAGING_ENV},
        "configurations": configs,
        "storage_floor": floor,
    }  # fmt: skip
    report["summary"] = verdicts = summary(configs, args.senders)
    path = write_results("messaging", report)
    for name, line in verdicts.items():
        print(f"{name:20} {line}")
    if floor is not None:
        pg = verdicts.get("agora-pg x1", {}).get("messages_per_s")
        print(storage_floor.describe(floor, pg))
    for goal in targets.of("messaging"):  # the table: bench/targets.py
        value = goal.read(report)
        print(f"{goal.name}: {goal.show(value)} ({goal.verdict(value)})")
    print(f"total {report['seconds_total']} s; results in {path}")
    after_run(path)


if __name__ == "__main__":
    main()
