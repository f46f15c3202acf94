"""Every metric Agora defines is documented and has a panel on the Grafana dashboard."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from agora.core import metrics

ROOT = Path(__file__).resolve().parents[2]


def exposed_names() -> set[str]:
    """The names as the page shows them (a counter's with its `_total`)."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(f"{value._name}_total")
        elif isinstance(value, Gauge | Histogram):
            names.add(value._name)
    return names


def test_every_metric_is_documented_and_on_the_dashboard() -> None:
    names = exposed_names()
    assert len(names) == 12
    docs = (ROOT / "docs" / "metrics.md").read_text()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "agora.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in names:
        assert f"`{name}`" in docs, name
        assert name in queries, name
