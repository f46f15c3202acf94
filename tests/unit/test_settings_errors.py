"""Settings mistakes told in the operator's words (agora.core.settings_errors)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agora.core.settings import Settings
from agora.core.settings_errors import example, explain, unknown_variables


def refused(**values: object) -> list[str]:
    with pytest.raises(ValidationError) as error:
        Settings(**values)  # type: ignore[arg-type]
    return explain(error.value, Settings)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_has_an_example(field: str) -> None:
    assert example(Settings, field)


def test_a_field_is_named_by_its_variable_with_an_example() -> None:
    assert refused(token_ttl="5") == [
        "AGORA_TOKEN_TTL='5': should be greater than or equal to 60 (example: AGORA_TOKEN_TTL=3600)"
    ]


def test_one_line_per_refused_value() -> None:
    lines = refused(port=0, log_level="loud", cookie_secure="maybe")
    assert [line.split("=", 1)[0] for line in lines] == [
        "AGORA_PORT", "AGORA_LOG_LEVEL", "AGORA_COOKIE_SECURE",
    ]  # fmt: skip
    assert all("\n" not in line and "pydantic" not in line for line in lines)


def test_secrets_and_url_passwords_are_not_shown() -> None:
    [line] = refused(env="prod", jwt_secret="short-and-secret")
    assert "short-and-secret" not in line and line.startswith("AGORA_JWT_SECRET must be")
    [line] = refused(redis_url="http://user:pa55word@cache:6379/0")
    assert "pa55word" not in line and "http://user:***@cache:6379/0" in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "is not a database URL"),
        ("postgresql://db/agora", "must use one of the drivers"),
        ("mysql+aiomysql://db/agora", "must use one of the drivers"),
    ],
)
def test_database_urls_are_checked_at_start(url: str, problem: str) -> None:
    [line] = refused(database_url=url)
    assert problem in line


def test_good_urls_pass() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://u:p@db/agora", redis_url="rediss://cache:6380/1",
        amqp_url="amqps://mq/", log_level="debug",
    )  # fmt: skip
    assert settings.log_level == "DEBUG"


def test_unknown_variables_get_the_closest_name() -> None:
    environ = {"AGORA_PROT": "1", "AGORA_PORT": "2", "AGORA_TEST_PG_DSN": "x", "AGORA_ZZZ": "",
               "AGORA_SERVE_SERVICE": "auth", "PATH": "/bin"}  # fmt: skip
    warnings = unknown_variables(environ, Settings, also_known=["AGORA_SERVE_SERVICE"])
    assert warnings == [
        "AGORA_PROT is not a setting Agora knows, it is ignored; did you mean AGORA_PORT?",
        "AGORA_ZZZ is not a setting Agora knows, it is ignored; see README's settings table",
    ]
