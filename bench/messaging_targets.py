"""Issue 13's targets for the messaging benchmark, judged on one run's summary.

- embedded: `agora x1` at least 0.5x the bare fan-out (deliveries/s, same sockets);
- PostgreSQL + Redis: `agora-pg x1` at least 0.5x the lower of the bare fan-out and the
  storage floor (`bench.messaging_storage_floor`, run in the same session), in
  messages/s;
- server CPU per stored message at most 1 ms: the catch-up fill (messages sent one after
  the other into a direct conversation, `fill_server_ms_per_message`), on each backend;
- a paced message reaches all 50 devices in under 10 ms at p99, embedded.
"""

from __future__ import annotations

from typing import Any

OVER_BARE = 0.5
OVER_FLOOR = 0.5
CPU_MS_PER_MESSAGE = 1.0
PACED_P99_MS = 10.0


def _verdict(name: str, measured: float | None, target: float, at_least: bool) -> dict[str, Any]:
    if measured is None:
        state = "not measured"
    elif (measured >= target) if at_least else (measured < target):
        state = "reached"
    else:
        state = "MISSED"
    return {"target": name, "measured": measured, "state": state}


def verdicts(
    summary: dict[str, Any], configs: dict[str, Any], floor: dict[str, Any] | None
) -> list[dict[str, Any]]:
    bare = configs.get("agora", {}).get("fanout", {}).get("bare", {})
    out = [
        _verdict(
            f"agora x1 / bare >= {OVER_BARE}x",
            summary.get("agora x1", {}).get("over_bare"),
            OVER_BARE,
            at_least=True,
        )
    ]
    pg = summary.get("agora-pg x1")
    lower = min(
        (x for x in (bare.get("messages_per_s"), (floor or {}).get("messages_per_s")) if x),
        default=None,
    )
    over = round(pg["messages_per_s"] / lower, 3) if pg and lower else None
    out.append(_verdict(f"agora-pg x1 / min(bare, floor) >= {OVER_FLOOR}x", over, OVER_FLOOR, True))
    for name in ("agora", "agora-pg"):
        cpu = configs.get(name, {}).get("catchup", {}).get("fill_server_ms_per_message")
        out.append(
            _verdict(f"{name} server CPU per stored message <= {CPU_MS_PER_MESSAGE} ms", cpu,
                     CPU_MS_PER_MESSAGE + 1e-9, at_least=False)
        )  # fmt: skip
    paced = summary.get("agora paced", {}).get("p99_ms")
    out.append(_verdict(f"agora paced p99 < {PACED_P99_MS} ms", paced, PACED_P99_MS, False))
    return out


def floor_line(floor: dict[str, Any], pg_messages_per_s: float | None) -> str:
    share = (
        f", agora-pg x1 = {pg_messages_per_s / floor['messages_per_s']:.3f}x of it"
        if pg_messages_per_s
        else ""
    )
    return (
        f"storage floor (bare asyncpg, one statement per message, {floor['senders']} senders): "
        f"{floor['messages_per_s']:,} msg/s, {floor['client_cpu_us_per_message']} µs client CPU "
        f"per message{share}"
    )
