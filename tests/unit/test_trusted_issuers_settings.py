"""AGORA_TRUSTED_ISSUERS is validated at start, with errors that never print a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agora.core.settings import Settings
from tests.support.settings import make_settings

STRONG = "s" * 40


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ({"issuer": "x", "algorithms": ["HS256"]}, "exactly one of secret, jwks_url, public_key"),
        (
            {"issuer": "x", "algorithms": ["RS256"], "secret": STRONG, "jwks_url": "https://j"},
            "exactly one of",
        ),
        ({"issuer": "x", "algorithms": ["RS256"], "secret": STRONG}, "a secret signs HS256 only"),
        ({"issuer": "x", "algorithms": ["HS256"], "jwks_url": "https://j"}, "HS256 needs a secret"),
        ({"issuer": "x", "algorithms": ["RS256"], "jwks_url": "ftp://j"}, "http:// or https://"),
        ({"issuer": "x", "algorithms": ["RS256"], "public_key": "nope"}, "not a PEM public key"),
        ({"issuer": "x", "algorithms": ["none"], "secret": STRONG}, "algorithms"),
        ({"issuer": "x", "algorithms": [], "secret": STRONG}, "algorithms"),
        ({"issuer": "agora-auth", "algorithms": ["HS256"], "secret": STRONG}, "Agora's own"),
        ({"issuer": "x", "algorithms": ["HS256"], "secret": "weak-secret-xyz"}, "15 bytes"),
    ],
)
def test_a_bad_entry_is_refused_clearly(tmp_path: Path, entry: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make_settings(tmp_path, trusted_issuers=[entry])
    assert said in str(refused.value)
    assert "weak-secret-xyz" not in str(refused.value)


def test_no_error_text_shows_a_secret(tmp_path: Path) -> None:
    secret = "a-strong-secret-that-must-never-be-printed-0123"
    entry = {"issuer": "x", "algorithms": ["RS256"], "secret": secret}
    with pytest.raises(ValidationError) as refused:
        make_settings(tmp_path, trusted_issuers=[entry])
    assert "HS256 only" in str(refused.value)
    assert secret[-12:] not in str(refused.value) and secret[:12] not in str(refused.value)


def test_an_issuer_listed_twice_is_refused(tmp_path: Path) -> None:
    entry = {"issuer": "x", "algorithms": ["HS256"], "secret": STRONG}
    with pytest.raises(ValidationError, match="listed twice"):
        make_settings(tmp_path, trusted_issuers=[entry, entry])


def test_a_weak_peer_secret_is_allowed_in_dev_only(tmp_path: Path) -> None:
    entry = {"issuer": "x", "algorithms": ["HS256"], "secret": "short"}
    assert make_settings(tmp_path, env="dev", trusted_issuers=[entry]).trusted_issuers


def test_read_from_the_environment_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"issuer": "billing", "algorithms": ["HS256"], "secret": STRONG, "audience": "a"}]
    monkeypatch.setenv("AGORA_TRUSTED_ISSUERS", json.dumps(entries))
    settings = Settings(env="dev", data_dir=tmp_path)  # type: ignore[call-arg]
    (issuer,) = settings.trusted_issuers
    assert (issuer.issuer, issuer.audience, issuer.secret_bytes()) == (
        "billing",
        "a",
        STRONG.encode(),
    )
