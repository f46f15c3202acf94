"""What a token check costs: the verified-token cache against a full verification, and
signing and verifying with each algorithm Agora supports.

    .venv/bin/python -m bench.tokens_bench [--repeat 7] [--min-time 0.2]

In one process, with `agora.security.tokens.TokenService` exactly as the services use it (the
same key objects, claims and checks), no network and no database. Each figure is the
median over `--repeat` runs of the per-call time, each run long enough (at least
`--min-time` seconds, as `timeit.autorange` sizes it) to drown the timer's overhead.

    sign         `issue_access`: claims, JSON, signature, base64
    full verify  `verify` with the cache off: header checks, kid lookup, signature,
                 every claim (PyJWT), the identity
    cached       `verify` of a token already verified: one bounded-cache lookup
    ratio        full verify / cached, for the same algorithm

Results: bench/results/tokens-<stamp>.json, and its chart.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from agora.security.keys import ASYMMETRIC, KeySet, generate_private_key, key_from_private
from agora.security.tokens import TokenService
from bench.charts import after_run
from bench.harness import machine, write_results

ISSUER, AUDIENCE = "agora-auth", "agora"
SECRET = "bench-secret-bench-secret-bench-secret-0123456789"


def per_call(func: Callable[[], object], repeat: int, min_time: float) -> float:
    """Median seconds per call."""
    timer = timeit.Timer(func)
    number, elapsed = timer.autorange()
    while elapsed < min_time:
        number *= 2
        elapsed = timer.timeit(number)
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


def keyset(alg: str) -> KeySet:
    if alg == "HS256":
        return KeySet.from_secret(SECRET)
    key = key_from_private(generate_private_key(alg))
    return KeySet([key], key.kid)


def measure(alg: str, repeat: int, min_time: float) -> dict[str, float]:
    keys = keyset(alg)
    cached = TokenService(keys, issuer=ISSUER, audience=AUDIENCE)
    uncached = TokenService(keys, issuer=ISSUER, audience=AUDIENCE, cache_size=0)
    token = cached.issue_access("42", "alice").token
    cached.verify(token)  # now in the cache
    return {
        "sign": per_call(lambda: cached.issue_access("42", "alice"), repeat, min_time),
        "full": per_call(lambda: uncached.verify(token), repeat, min_time),
        "cached": per_call(lambda: cached.verify(token), repeat, min_time),
        "bytes": len(token),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2)
    args = parser.parse_args()

    rows: dict[str, dict[str, float]] = {}
    print(f"{'alg':<6} {'sign us':>9} {'full verify us':>15} {'cached us':>10} "
          f"{'full/cached':>12} {'token bytes':>12}")  # fmt: skip
    for alg in ("HS256", *ASYMMETRIC):
        m = measure(alg, args.repeat, args.min_time)
        rows[alg] = {
            "full_verify_us": round(m["full"] * 1e6, 2),
            "sign_us": round(m["sign"] * 1e6, 2),
            "cached_us": round(m["cached"] * 1e6, 3),
            "token_bytes": m["bytes"],
        }
        print(
            f"{alg:<6} {m['sign'] * 1e6:>9.1f} {m['full'] * 1e6:>15.1f} "
            f"{m['cached'] * 1e6:>10.2f} {m['full'] / m['cached']:>11.0f}x {int(m['bytes']):>12}"
        )
    out = write_results("tokens", {
        "benchmark": "tokens", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args), "machine": machine(), "rows": rows,
        "ratios": {f"{alg} full / cached": row["full_verify_us"] / row["cached_us"]
                   for alg, row in rows.items()},
    })  # fmt: skip
    print(f"results: {out}")
    after_run(out)


if __name__ == "__main__":
    main()
