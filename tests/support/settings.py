"""Settings for a test: its own data directory, a known secret, the cheapest hashing."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from agora.core.settings import Settings

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "data_dir": tmp_path,
        "jwt_secret": SecretStr(TEST_SECRET),
        "argon2_time_cost": 1,
        "argon2_memory_cost": 64,
        "argon2_parallelism": 1,
        "log_level": "WARNING",
        # Tests register many users from one client address; the throttle's own tests
        # set a low limit.
        "register_ip_max_attempts": 100_000,
        # No gRPC server unless a test starts one (on an ephemeral port): a fixed port
        # would collide with a dev server or another run.
        "grpc_port": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
