"""The regression guard's decisions (bench/guard.py): a ratio under its target by more than
the measured noise fails, one within the noise passes, a missing result fails, and the
exit status says so. The targets come from the one table, bench/targets.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import guard, targets
from bench.guard import MISSED, NO_RESULT, NOISE, REACHED, check, decide, exit_status
from bench.targets import Target, reader

AT_LEAST = Target("demo", "agora / baseline", 3.0, 13, reader("ratio"), tolerance=0.2)
AT_MOST = Target("demo", "cpu agora / baseline", 0.35, 13, reader("cpu"), at_most=True,
                 tolerance=0.2)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "status"),
    [(3.5, REACHED), (3.0, REACHED), (2.5, NOISE), (2.41, NOISE), (2.39, MISSED), (0.1, MISSED)],
)
def test_a_floor_fails_only_beyond_its_tolerance(value: float, status: str) -> None:
    assert decide(AT_LEAST, value).status == status


@pytest.mark.parametrize(
    ("value", "status"), [(0.2, REACHED), (0.35, REACHED), (0.41, NOISE), (0.43, MISSED)]
)
def test_a_ceiling_fails_only_beyond_its_tolerance(value: float, status: str) -> None:
    assert decide(AT_MOST, value).status == status


def test_without_tolerance_any_miss_fails() -> None:
    strict = Target("demo", "x", 1.0, 13, reader("ratio"))
    assert decide(strict, 0.99).status == MISSED


def test_a_missing_report_or_ratio_is_a_failure_not_a_pass() -> None:
    checks = check([AT_LEAST, AT_MOST], {"demo": {"ratio": 4.0}})
    assert [c.status for c in checks] == [REACHED, NO_RESULT]
    assert exit_status(checks) == 1
    assert [c.status for c in check([AT_LEAST], {"demo": None})] == [NO_RESULT]
    assert [c.status for c in check([AT_LEAST], {})] == [NO_RESULT]


def test_exit_status_is_zero_only_when_nothing_failed() -> None:
    assert exit_status(check([AT_LEAST], {"demo": {"ratio": 2.5}})) == 0  # within the noise
    assert exit_status(check([AT_LEAST], {"demo": {"ratio": 2.0}})) == 1


def test_the_full_benchmarks_verdict_has_no_tolerance() -> None:
    assert AT_LEAST.verdict(2.9) == "target >= 3x: MISSED"
    assert AT_LEAST.verdict(3.0) == "target >= 3x: reached"
    assert AT_MOST.verdict(0.36) == "target <= 0.35x: MISSED"


def test_main_reads_the_results_files_and_exits_by_the_rule(tmp_path: Path) -> None:
    """The guarded issue-13 targets, read from results files shaped as the benchmarks write them."""
    reached = {
        "auth": {"ratios": {"agora-protected / flask-pyjwt": 3.1}},
        "publications": {"ratio": 3.2, "servers": {
            "agora": {"cpu_ms_per_request": {"total": 0.3}},
            "flask": {"cpu_ms_per_request": {"total": 1.0}}}},
        "messaging": {"summary": {"agora x1": {"over_bare": 0.6}}},
        "social": {"summary": {"agora-redis echo / bare": {"rate_ratio": 0.7},
                               "agora-redis fanout / bare": {"rate_ratio": 0.65}}},
    }  # fmt: skip

    def run(auth_ratio: float | None) -> int:
        reports = dict(reached)
        if auth_ratio is None:
            del reports["auth"]
        else:
            reports["auth"] = {"ratios": {"agora-protected / flask-pyjwt": auth_ratio}}
        paths = []
        for name, report in reports.items():
            paths.append(tmp_path / f"{name}-20261207T100000Z.json")
            paths[-1].write_text(json.dumps(report))
        return guard.main(["--results", *map(str, paths)])

    auth = targets.target("auth", "agora-protected / flask-pyjwt")
    assert run(3.1) == 0
    assert run(auth.bound * (1 - auth.tolerance / 2)) == 0  # under the target, within the noise
    assert run(auth.bound * (1 - auth.tolerance) * 0.95) == 1  # beyond the noise
    assert run(None) == 1  # no auth result at all


def test_the_guard_checks_the_issue_13_targets() -> None:
    names = {(t.benchmark, t.name, t.bound, t.at_most) for t in guard.guarded()}
    assert names == {
        ("auth", "agora-protected / flask-pyjwt", 3.0, False),
        ("publications", "agora / flask, requests/s", 3.0, False),
        ("publications", "agora / flask, CPU per request", 0.35, True),
        ("messaging", "agora x1 / bare, deliveries/s", 0.5, False),
        ("social", "agora-redis echo / bare", 0.6, False),
        ("social", "agora-redis fanout / bare", 0.6, False),
    }
    assert set(guard.QUICK) == {t.benchmark for t in guard.guarded()}
    assert all(0 < t.tolerance <= 0.5 for t in guard.guarded()), "the measured noise"
    assert targets.target("auth", "protected / unprotected").bound == 0.5
