"""Every Prometheus metric Agora exposes, defined once, and their exposition.

Each thing is counted at the one place it happens (the hooks are small calls into this
module); the list, with what each metric means, is in docs/metrics.md.

Several processes (`agora serve --workers N`) share one directory named by
`PROMETHEUS_MULTIPROC_DIR` (made by `prepare_multiprocess_dir` before the workers
start): prometheus-client then writes each process's values to files there and
`exposition` sums them, so any worker's `/metrics` answers for all of them. The variable
must be set before prometheus-client is imported, which is why the server's parent
process sets it and only its (spawned) workers record.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# No `_created` series: they double the page and say little.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- HTTP (agora.web.metrics) -------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "agora_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "agora_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- sockets (agora.realtime.endpoint, services/messaging/socket) ---------------------------

SOCKETS_OPEN = Gauge(
    "agora_sockets_open",
    "Sockets open now (ticket redeemed), by service.",
    ["service"],
    multiprocess_mode="livesum",
)
SOCKET_CONNECTIONS = Counter(
    "agora_socket_connections_total",
    "Sockets opened with a valid ticket, by service.",
    ["service"],
)
SOCKET_JOINS = Counter(
    "agora_socket_joins_total",
    "Topic joins answered ok, by service and topic kind (user, conversation).",
    ["service", "topic"],
)

# --- messaging ------------------------------------------------------------------------------

MESSAGES_STORED = Counter(
    "agora_messages_stored_total",
    "Messages stored (a retried send of a stored message is not counted again).",
)
DELIVERIES_PUSHED = Counter(
    "agora_deliveries_pushed_total",
    "Frames pushed to this process's sockets by the messaging fan-out.",
)
CATCH_UP_REPLIES = Counter(
    "agora_catch_up_replies_total",
    "Conversation catch-ups answered on a socket join, by whether they were recovered.",
    ["recovered"],
)

# --- events ---------------------------------------------------------------------------------

CONSUMER_LAG = Histogram(
    "agora_event_consumer_lag_seconds",
    "Time from an event's occurred_at to its receipt by the user-events consumer.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)
OUTBOX_DEPTH = Gauge(
    "agora_outbox_depth",
    "auth_outbox rows not yet published, as the relay saw on its last poll.",
    multiprocess_mode="livemax",
)

# --- security decisions (counted from the audit trail, agora.core.audit) --------------------

AUTH_REFUSALS = Counter(
    "agora_auth_refusals_total",
    "Refused tokens, tickets, logins, joins and accesses, by service, audit event and reason.",
    ["service", "event", "reason"],
)
RATE_LIMIT_BLOCKS = Counter(
    "agora_rate_limit_blocks_total",
    "Rate-limit blocks (and login attempts refused during one), by service, event and scope.",
    ["service", "event", "scope"],
)

_REFUSALS = (
    "rejected",
    "forbidden",
    "login_failed",
    "ticket_refused",
    "ticket_reused",
    "join_refused",
    "topic_refused",
)
_BLOCKS = ("rate_limited", "login_throttled", "login_blocked")


def count_audit_event(entry: dict[str, Any]) -> None:
    """Counts an audit entry that is a refusal or a block; every other one is ignored.

    Labels come from the code's own constants (event names, refusal reasons, limit
    scopes), never from what a client sent, so their number stays bounded.
    """
    event = entry["event"]
    kind = event.rpartition(".")[2]
    if kind in _REFUSALS:
        reason = entry.get("reason") or entry.get("action") or ""
        AUTH_REFUSALS.labels(entry["service"], event, str(reason)[:40]).inc()
    elif kind in _BLOCKS:
        scope = entry.get("scope") or ""
        if kind == "rate_limited" and entry.get("kind"):
            scope = f"{entry['kind']}:{scope}"  # messaging: messages or media, per user or ip
        RATE_LIMIT_BLOCKS.labels(entry["service"], event, str(scope)[:40]).inc()


# --- exposition -----------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> bytes:
    """The text exposition: this process's metrics, or every worker's in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    _forget_dead_processes(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _forget_dead_processes(path: str) -> None:
    """A worker that crashed never ran its exit hook: its live gauges (open sockets) would
    count forever. Its pid is gone, so its files are dropped here, at each scrape."""
    pids = {
        name.rsplit("_", 1)[1].removesuffix(".db")
        for name in glob.glob(os.path.join(path, "gauge_live*_*.db"))
    }
    for pid in pids:
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def process_exiting() -> None:
    """This worker stops: its live gauges stop counting (its counters stay in the sums)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


def prepare_multiprocess_dir(workers: int) -> None:
    """The directory the workers of one server run share, empty at start: the operator's
    `PROMETHEUS_MULTIPROC_DIR` (emptied of an earlier run's values), else, for several
    workers, a new temporary one, removed when this (parent) process exits. Sets the
    variable for the workers to inherit."""
    path = multiprocess_dir()
    if path is not None:
        os.makedirs(path, exist_ok=True)
        own = f"_{os.getpid()}.db"  # this process's own files, opened at import
        for stale in glob.glob(os.path.join(path, "*.db")):
            if not stale.endswith(own):
                os.remove(stale)
        return
    if workers <= 1:
        return  # one process: its own registry is the whole story
    path = tempfile.mkdtemp(prefix="agora-metrics-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = path
