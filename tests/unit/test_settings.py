"""Settings: what refuses to start, and the dev secret kept under the data directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from agora.core.settings import MIN_SECRET_BYTES, Settings, load_settings

LONG_SECRET = "s" * MIN_SECRET_BYTES


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no AGORA_* from the machine, no ./var written."""
    import os

    for name in list(os.environ):
        if name.startswith("AGORA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("env", ["prod", "test"])
def test_outside_dev_a_short_or_missing_secret_refuses_to_start(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGORA_ENV", env)
    for secret in (None, "", "s" * (MIN_SECRET_BYTES - 1)):
        if secret is None:
            monkeypatch.delenv("AGORA_JWT_SECRET", raising=False)
        else:
            monkeypatch.setenv("AGORA_JWT_SECRET", secret)
        with pytest.raises(ValidationError, match="AGORA_JWT_SECRET must be at least 32 bytes"):
            load_settings()
    monkeypatch.setenv("AGORA_JWT_SECRET", LONG_SECRET)
    assert load_settings().secret == LONG_SECRET


def test_secret_length_is_counted_in_bytes() -> None:
    eleven_chars_33_bytes = "€" * 11
    settings = Settings(env="prod", jwt_secret=SecretStr(eleven_chars_33_bytes))  # type: ignore[call-arg]
    assert settings.env == "prod"


def test_prod_refuses_insecure_cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_ENV", "prod")
    monkeypatch.setenv("AGORA_JWT_SECRET", LONG_SECRET)
    monkeypatch.setenv("AGORA_COOKIE_SECURE", "false")
    with pytest.raises(ValidationError, match="AGORA_COOKIE_SECURE=false is only allowed"):
        load_settings()


def test_dev_allows_insecure_cookies_for_local_http(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, cookie_secure=False).cookie_secure is False


def test_cookies_are_secure_by_default(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).cookie_secure is True


def test_dev_generates_a_private_secret_once_and_reuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    first = load_settings(data_dir=data_dir)
    secret_file = data_dir / "jwt_secret"
    assert first.secret == secret_file.read_text()
    assert len(first.secret.encode()) >= MIN_SECRET_BYTES
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "generated a JWT secret" in caplog.text

    caplog.clear()
    assert load_settings(data_dir=data_dir).secret == first.secret
    assert "generated" not in caplog.text
    assert load_settings(data_dir=tmp_path / "elsewhere").secret != first.secret


def test_dev_secret_from_the_environment_wins_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGORA_JWT_SECRET", "dev-secret")
    assert load_settings(data_dir=tmp_path).secret == "dev-secret"
    assert not (tmp_path / "jwt_secret").exists()


def test_empty_secret_in_dev_is_replaced_by_a_generated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGORA_JWT_SECRET", "")
    settings = load_settings(data_dir=tmp_path)
    assert len(settings.secret) >= MIN_SECRET_BYTES
    assert settings.secret == (tmp_path / "jwt_secret").read_text()


def test_secret_file_left_empty_is_regenerated_private(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt_secret"
    secret_file.touch(mode=0o644)
    secret_file.chmod(0o644)
    settings = load_settings(data_dir=tmp_path)
    assert len(settings.secret) >= MIN_SECRET_BYTES
    assert secret_file.read_text() == settings.secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_settings_without_load_settings_have_no_secret_to_give() -> None:
    with pytest.raises(RuntimeError, match="load_settings"):
        _ = Settings().secret  # type: ignore[call-arg]


def test_database_defaults_to_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var")
    expected = (tmp_path / "var" / "agora.db").resolve()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected}"


def test_relative_data_dir_resolves_against_the_working_directory(tmp_path: Path) -> None:
    url = load_settings().resolved_database_url
    assert url == f"sqlite+aiosqlite:///{(tmp_path / 'var' / 'agora.db').resolve()}"


def test_database_url_setting_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "postgresql+asyncpg://agora@db.internal:5432/agora"
    monkeypatch.setenv("AGORA_DATABASE_URL", url)
    assert load_settings(data_dir=tmp_path).resolved_database_url == url


def test_environment_is_read_with_the_agora_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGORA_PORT", "9001")
    monkeypatch.setenv("AGORA_TOKEN_TTL", "900")
    monkeypatch.setenv("PORT", "1")
    settings = load_settings(data_dir=tmp_path)
    assert (settings.port, settings.token_ttl) == (9001, 900)


@pytest.mark.parametrize(
    ("name", "value"),
    [("AGORA_PORT", "0"), ("AGORA_PORT", "70000"), ("AGORA_TOKEN_TTL", "10"),
     ("AGORA_TOKEN_LEEWAY", "61"), ("AGORA_ENV", "production")],
)  # fmt: skip
def test_out_of_range_values_refuse_to_start(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load_settings(data_dir=tmp_path)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.env = "prod"


def test_messaging_settings_are_checked_at_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, media_allowed_types="image/png, image/gif")
    assert settings.media_allowed_types == ["image/png", "image/gif"]
    assert settings.resolved_media_dir == tmp_path / "media"
    assert Settings(notify_url="https://push.example.com/hook").notify_url
    with pytest.raises(ValidationError, match="AGORA_NOTIFY_URL"):
        Settings(notify_url="ftp://push.example.com/hook")
    with pytest.raises(ValidationError, match="AGORA_MEDIA_URL"):
        Settings(media_url="file:///srv/media")
    with pytest.raises(ValidationError):
        Settings(messaging_max_message_chars=0)
