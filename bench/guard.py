"""Performance regression guard: the quick form of each benchmark against its targets.

    make bench-quick                     (= .venv/bin/python -m bench.guard)
    .venv/bin/python -m bench.guard --results bench/results/social-....json ...

Runs the quick form of every benchmark that has a guarded target in bench/targets.py
(about 2 minutes on the 2-core machine), reads each ratio from the results JSON it
wrote, and prints it against its target. Exit status 1 when a ratio is worse than its
target by more than the target's measured noise (`tolerance`), or when a benchmark
gave no result; 0 otherwise. `--results` checks results already written instead of
running anything. Not part of `make test`: it measures, it does not test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, benchmark_of, load, newest
from bench.targets import TARGETS, Report, Target

# The quick form of each guarded benchmark: short rounds, no waiting for an idle machine.
QUICK: dict[str, list[str]] = {
    "auth": ["bench.run", "--only", "agora-protected", "flask-pyjwt",
             "--duration", "3", "--rounds", "2", "--warmup", "1", "--idle-wait", "0"],
    "publications": ["bench.publications_bench", "--duration", "3", "--rounds", "2",
                     "--warmup", "2", "--idle-wait", "0"],
    "messaging": ["bench.messaging_bench", "--quick"],
    "social": ["bench.social_bench", "--quick"],
}  # fmt: skip

# Under the target by less than the measured noise: shown as missed, not failed on.
REACHED, NOISE, MISSED, NO_RESULT = "reached", "MISSED, within noise", "MISSED", "NO RESULT"


@dataclass(frozen=True)
class Check:
    target: Target
    value: float | None
    status: str

    @property
    def failed(self) -> bool:
        return self.status in (MISSED, NO_RESULT)

    def line(self) -> str:
        t = self.target
        shown = t.show(self.value)
        limit = t.bound * (1 + t.tolerance if t.at_most else 1 - t.tolerance)
        side = "over" if t.at_most else "under"
        margin = f"noise {t.tolerance:.0%}: fails {side} {t.show(limit)}"
        return (
            f"{t.benchmark:<13} {t.name:<34} {shown:>7}  "
            f"target {t.label:<8} {margin:<30} {self.status}"
        )


def decide(target: Target, value: float | None) -> Check:
    if value is None:
        return Check(target, None, NO_RESULT)
    if target.reached(value):
        return Check(target, value, REACHED)
    return Check(target, value, NOISE if target.within_noise(value) else MISSED)


def check(targets: Iterable[Target], reports: Mapping[str, Report | None]) -> list[Check]:
    """Each target against its benchmark's report (None: the benchmark gave none)."""
    checks = []
    for target in targets:
        report = reports.get(target.benchmark)
        checks.append(decide(target, None if report is None else target.read(report)))
    return checks


def exit_status(checks: Iterable[Check]) -> int:
    return 1 if any(c.failed for c in checks) else 0


def guarded() -> list[Target]:
    return [t for t in TARGETS if t.guarded]


def run_quick(benchmark: str) -> Report | None:
    """Run one quick benchmark (its output shown as it comes); its fresh report or None."""
    started = time.time() - 1  # file times are whole seconds on some filesystems
    print(f"== {benchmark}: python -m {' '.join(QUICK[benchmark])}", flush=True)
    env = {**os.environ, "BENCH_CHARTS": "off"}  # a quick run never replaces the docs' charts
    done = subprocess.run([sys.executable, "-m", *QUICK[benchmark]], cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"   {benchmark} exited with {done.returncode}", flush=True)
        return None
    return load(newest(benchmark, since=started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.guard", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--results", nargs="+", type=Path, help="check these results, run nothing")
    args = parser.parse_args(argv)
    targets = guarded()
    reports: dict[str, Report | None] = {}
    began = time.monotonic()
    if args.results:
        for path in args.results:
            name = benchmark_of(path)
            if name is not None:
                reports[name] = load(path)
    else:
        for benchmark in dict.fromkeys(t.benchmark for t in targets):
            reports[benchmark] = run_quick(benchmark)
    checks = check(targets, reports)
    print(f"\nregression guard ({time.monotonic() - began:.0f} s):")
    for c in checks:
        print("  " + c.line())
    status = exit_status(checks)
    failed = sum(c.failed for c in checks)
    print(f"{failed} of {len(checks)} targets missed beyond the noise or without a result"
          if status else "every target reached or within the measured noise")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
