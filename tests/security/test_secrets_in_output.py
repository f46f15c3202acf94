"""Secrets in output (issue 11): a refused secret is never printed, only its length.

(The socket ticket in log lines: tests/e2e/test_logs.py and tests/unit/test_logs.py;
the keyed CSRF token: tests/security/test_csrf.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agora.core.settings import Settings
from agora.core.settings_errors import explain
from tests.e2e.agora_command import agora_env, run_agora

# 30 characters: two short of the minimum, and no piece of it is any other text here.
WEAK = "Wq7xK2pZ9mLr4TvB8nYc3HsJ6dFg5Q"


def pieces(secret: str, size: int = 6) -> list[str]:
    """Every run of `size` characters of the secret: none may be printed."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_not_printed(text: str, secret: str) -> None:
    leaked = [piece for piece in pieces(secret) if piece in text]
    assert not leaked, f"pieces of the secret were printed: {leaked}\n{text}"


@pytest.mark.parametrize("variable", ["jwt_secret", "csrf_secret"])
def test_a_refused_secret_is_never_printed_only_its_length(variable: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(env="prod", **{"jwt_secret": "j" * 40, variable: WEAK})  # type: ignore[arg-type]
    error = raised.value
    for text in (str(error), repr(error), "\n".join(explain(error, Settings))):
        assert_not_printed(text, WEAK)
        assert "has 30" in text, text
        assert f"AGORA_{variable.upper()}" in text, text


@pytest.mark.parametrize("variable", ["AGORA_JWT_SECRET", "AGORA_CSRF_SECRET"])
def test_the_command_refuses_a_weak_secret_without_printing_it(
    tmp_path: Path, variable: str
) -> None:
    env = agora_env(tmp_path, AGORA_ENV="prod", AGORA_COOKIE_SECURE="true")
    env.setdefault("AGORA_JWT_SECRET", "j" * 40)
    env[variable] = WEAK
    result = run_agora("check", env=env)
    assert result.returncode == 2, result
    output = result.stdout + result.stderr
    assert_not_printed(output, WEAK)
    assert f"{variable} must be at least 32 bytes" in output and "has 30" in output, output


def test_prod_needs_a_key_for_the_csrf_token() -> None:
    with pytest.raises(ValidationError, match="AGORA_CSRF_SECRET must be set in prod"):
        Settings(env="prod", jwt_algorithm="RS256", jwt_secret=None)  # type: ignore[call-arg]
    Settings(env="prod", jwt_algorithm="RS256", csrf_secret="c" * 40)  # type: ignore[call-arg]
