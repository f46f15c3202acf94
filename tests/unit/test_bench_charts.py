"""bench/charts.py reads rows generically: a row a benchmark adds gets its bar, whatever its
name, and each bar carries the run's date and machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.charts import chart_of, draw_result, panels_of, run_label

MACHINE = {"hostname": "box", "nproc": 2, "python": "3.11.7"}


def bars(report: dict[str, object]) -> dict[str, dict[str, float]]:
    return {p.title: {b.label: b.value for b in p.bars} for p in panels_of(report)}


def test_auth_rows_and_a_new_row_become_bars() -> None:
    report = {"benchmark": "auth", "rows": {
        "agora-protected": {"median_requests_per_s": 9000.0, "rounds": []},
        "flask-pyjwt": {"median_requests_per_s": 3000.0},
        "starlette-plain": {"median_requests_per_s": 12000.0},  # a row added later
    }}  # fmt: skip
    assert bars(report) == {
        "auth": {"agora-protected": 9000.0, "flask-pyjwt": 3000.0, "starlette-plain": 12000.0}
    }


def test_messaging_fanout_rows_of_every_configuration() -> None:
    report = {"bench": "messaging", "configurations": {
        "agora": {"fanout": {"bare": {"messages_per_s": 1500, "deliveries_per_s": 75000},
                             "agora messaging x1": {"messages_per_s": 230}}},
        "agora-pg": {"fanout": {"agora-pg storage floor": {"messages_per_s": 2700}}},
    }}  # fmt: skip
    assert bars(report) == {
        "send to delivery on every device": {
            "bare": 1500.0, "agora messaging x1": 230.0, "agora-pg storage floor": 2700.0
        }
    }  # fmt: skip


def test_social_rows_per_kind() -> None:
    report = {"bench": "social", "throughput": {
        "agora-redis": {"echo": {"round_trips_per_s": 9000}, "fanout": {"deliveries_per_s": 50}},
        "bare": {"echo": {"round_trips_per_s": 50000}, "fanout": {"deliveries_per_s": 90}},
    }, "idle": {}}  # fmt: skip
    assert bars(report) == {
        "echo": {"agora-redis": 9000.0, "bare": 50000.0},
        "fan-out": {"agora-redis": 50.0, "bare": 90.0},
    }


def test_each_bar_is_labelled_with_the_runs_date_and_machine() -> None:
    report = {"date": "2026-12-07T10:01:02+00:00", "machine": MACHINE}
    assert run_label(report) == "2026-12-07 10:01 UTC · box · 2 cores · Python 3.11.7"


def test_ratios_carry_their_target_verdict() -> None:
    report = {"benchmark": "auth", "machine": MACHINE,
              "rows": {"a": {"median_requests_per_s": 1.0}},
              "ratios": {"agora-protected / flask-pyjwt": 2.5, "other / one": 1.25}}  # fmt: skip
    chart = chart_of(Path("auth-20261207T100102Z.json"), report)
    assert chart.name == "auth"
    assert "agora-protected / flask-pyjwt: 2.50x  (target >= 3x: MISSED)" in chart.ratios
    assert "other / one: 1.25x" in chart.ratios


def test_a_png_is_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = tmp_path / "tokens-20261207T100102Z.json"
    result.write_text(json.dumps({"benchmark": "tokens", "machine": MACHINE,
                                  "rows": {"HS256": {"full_verify_us": 200.0}}}))  # fmt: skip
    drawn = draw_result(result, tmp_path / "out")
    assert drawn == tmp_path / "out" / "tokens.png"
    assert drawn.read_bytes().startswith(b"\x89PNG")


def test_summary_ratios_of_every_row_are_written() -> None:
    report = {"bench": "messaging", "summary": {
        "agora x1": {"over_bare": 0.11, "over_social": 0.3},
        "agora-pg x1": {"over_bare": 0.05, "over_social": None},
    }}  # fmt: skip
    lines = chart_of(Path("messaging-20261207T100102Z.json"), report).ratios
    assert lines == [
        "agora x1 / bare, deliveries/s: 0.11x  (target >= 0.5x: MISSED)",
        "agora x1 / social: 0.30x",
        "agora-pg x1 / bare: 0.05x",
    ]


def test_a_run_without_rows_is_one_bar() -> None:
    report = {"benchmark": "messaging-storage-floor", "messages_per_s": 779.7, "seconds": 10}
    assert bars(report) == {"": {"messaging-storage-floor": 779.7}}
