"""Settings mistakes told in the operator's words: the environment variable, what is
wrong with its value, and an example of a good one; one line each, no traceback.

Pydantic names fields (`token_ttl`) and links to its docs; an operator set
`AGORA_TOKEN_TTL` and wants to know what to write instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr, ValidationError

PREFIX = "AGORA_"
# Examples for settings whose default (empty, None) shows nothing worth copying.
EXAMPLES = {
    "log_format": "json",
    "metrics_enabled": "true",
    "openapi": "true",
    "database_url": "postgresql+asyncpg://agora:PASSWORD@db.example.com:5432/agora",
    "redis_url": "redis://127.0.0.1:6379/0",
    "amqp_url": "amqp://agora:PASSWORD@127.0.0.1:5672/",
    "amqp_ca_file": "/etc/agora/amqp-ca.pem",
    "amqp_cert_file": "/etc/agora/amqp-client.pem",
    "amqp_key_file": "/etc/agora/amqp-client.key",
    "redis_namespace": "staging:",
    "amqp_name_suffix": ".staging",
    "jwt_secret": "$(openssl rand -base64 48)",
    "jwt_private_key_file": "/etc/agora/jwt-signing.pem",
    "jwks_url": "https://auth.example.com/auth/.well-known/jwks.json",
    "cors_origins": "https://app.example.com,https://admin.example.com",
    "media_dir": "/var/lib/agora/media",
    "web_dist_dir": "/srv/agora/web",
    "media_url": "https://media.internal.example.com/objects",
    "media_token": "$(openssl rand -base64 32)",
    "csrf_secret": "$(openssl rand -base64 48)",
    "notify_url": "https://notify.internal.example.com/agora",
    "users_grpc_target": "auth.internal.example.com:50051",
    "trusted_issuers": '[{"issuer": "billing", "algorithms": ["HS256"], "secret": "..."}]',
    "introspection_secret": "$(openssl rand -base64 32)",
}
# Settings whose values never go back out on a terminal or into a log.
SECRETS = ("jwt_secret", "csrf_secret", "media_token", "trusted_issuers", "introspection_secret")
VARIABLE = re.compile(r"\bAGORA_[A-Z0-9_]+\b")


def variable(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def example(model: type[BaseModel], field: str) -> str:
    """A value that would be accepted, as the operator would write it."""
    if field in EXAMPLES:
        return EXAMPLES[field]
    info = model.model_fields.get(field)
    default: Any = info.get_default(call_default_factory=True) if info else None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(map(str, default))
    if default is None or isinstance(default, SecretStr):
        return ""
    return str(default) if not isinstance(default, Path) else default.as_posix()


def shown(field: str, value: object) -> str:
    """The refused value, quoted, with secrets and URL passwords kept out."""
    if field in SECRETS:
        return "(hidden)"
    text = str(value)
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and parts.password:
        text = text.replace(f":{parts.password}@", ":***@", 1)
    return repr(text)


def _problem(message: str, name: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message.removeprefix(f"{name} ")  # a validator that named the variable itself
    if message.startswith("Input should"):
        message = "should" + message.removeprefix("Input should")
    return message


def explain(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per refused value: `AGORA_X='value': problem (example: AGORA_X=good)`."""
    lines = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        field = str(loc[0]) if loc else ""
        if field in model.model_fields:
            name = variable(field)
            head = f"{name}={shown(field, item.get('input'))}"
        else:  # a check across settings: its message names the variables already
            found = VARIABLE.search(item["msg"])
            name = found.group(0) if found else ""
            field = name.removeprefix(PREFIX).lower()
            head = ""
        problem = _problem(item["msg"], name if head else "")
        good = example(model, field) if field in model.model_fields else ""
        hint = f" (example: {name}={good})" if good else ""
        lines.append(f"{head}: {problem}{hint}" if head else f"{problem}{hint}")
    return lines


def unknown_variables(
    environ: Mapping[str, str], model: type[BaseModel], also_known: Iterable[str] = ()
) -> list[str]:
    """A warning per AGORA_* variable that no setting reads (a typo is silently ignored
    otherwise), with the closest known name."""
    known = {variable(field) for field in model.model_fields}
    ignored = known | set(also_known)
    fields = sorted(name.removeprefix(PREFIX) for name in known)
    warnings = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in ignored:
            continue
        # The test suite's and benchmarks' own variables, not Agora's settings.
        if name.startswith(("AGORA_TEST_", "AGORA_BENCH_")) or name == "AGORA_REQUIRE_SERVICES":
            continue
        # Compared without the prefix, which every name shares and would make any two alike.
        close = difflib.get_close_matches(name.removeprefix(PREFIX), fields, n=1, cutoff=0.6)
        guess = f"; did you mean {PREFIX}{close[0]}?" if close else "; see README's settings table"
        warnings.append(f"{name} is not a setting Agora knows, it is ignored{guess}")
    return warnings
