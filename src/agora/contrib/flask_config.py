"""`agora.contrib.flask`'s configuration: `AGORA_*` keys of a Flask config, named and
checked as Agora's own settings (docs/flask.md). No Flask import: plain mappings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agora.contrib.introspection import Introspection
from agora.core.issuers import TrustedIssuer, check_trusted_issuers
from agora.core.settings import MIN_SECRET_BYTES
from agora.security.client_secrets import derived_client_secret
from agora.security.jwks import JwksSource
from agora.security.keys import KeySet
from agora.security.peers import PeerIssuers
from agora.security.tokens import TokenService

OFF = ("0", "false", "no", "off")


def _number(config: Mapping[str, Any], name: str, default: float) -> float:
    return float(config.get(name, default))


def tokens_from_config(config: Mapping[str, Any]) -> TokenService:
    """A TokenService from `AGORA_*` keys of a Flask config, named as the settings are:
    AGORA_JWT_SECRET, AGORA_JWKS_URL and/or AGORA_TRUSTED_ISSUERS (at least one)."""
    secret = str(config.get("AGORA_JWT_SECRET") or "")
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise RuntimeError(
            f"AGORA_JWT_SECRET in the Flask config is {len(secret.encode())} bytes; at least "
            f"{MIN_SECRET_BYTES} are needed, and it must be the auth service's"
        )
    peers = peers_from_config(config)
    if not (secret or config.get("AGORA_JWKS_URL") or peers):
        raise RuntimeError(
            "the Flask config needs AGORA_JWT_SECRET, AGORA_JWKS_URL or AGORA_TRUSTED_ISSUERS"
        )
    return TokenService(
        KeySet.from_secret(secret) if secret else KeySet([], None),
        issuer=config.get("AGORA_JWT_ISSUER", "agora-auth"),
        audience=config.get("AGORA_JWT_AUDIENCE", "agora"),
        leeway=int(config.get("AGORA_TOKEN_LEEWAY", 30)),
        cache_size=int(config.get("AGORA_VERIFIED_TOKEN_CACHE_SIZE", 10_000)),
        peers=peers,
    )


def peers_from_config(config: Mapping[str, Any]) -> PeerIssuers | None:
    raw = config.get("AGORA_TRUSTED_ISSUERS") or []
    try:
        entries = TypeAdapter(list[TrustedIssuer]).validate_python(
            json.loads(raw) if isinstance(raw, str) else raw
        )
        strong = None if config.get("AGORA_ENV") == "dev" else MIN_SECRET_BYTES
        check_trusted_issuers(entries, config.get("AGORA_JWT_ISSUER", "agora-auth"), strong)
    except ValidationError as error:  # its own text would show the input, secrets included
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise RuntimeError(f"AGORA_TRUSTED_ISSUERS in the Flask config: {problems}") from None
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    if not entries:
        return None
    return PeerIssuers(
        entries,
        kid_retry=_number(config, "AGORA_JWKS_REFETCH_INTERVAL", 30.0),
        min_gap=_number(config, "AGORA_JWKS_MIN_REFETCH_GAP", 2.0),
    )


def jwks_from_config(config: Mapping[str, Any]) -> JwksSource | None:
    url = config.get("AGORA_JWKS_URL")
    if not url:
        return None
    return JwksSource(
        str(url),
        label="the auth service",
        kid_retry=_number(config, "AGORA_JWKS_REFETCH_INTERVAL", 30.0),
        min_gap=_number(config, "AGORA_JWKS_MIN_REFETCH_GAP", 2.0),
    )


def introspection_from_config(config: Mapping[str, Any], client_id: str) -> Introspection | None:
    """AGORA_AUTH_URL: ask the auth service (RFC 7662) whether tokens are still active."""
    auth_url = config.get("AGORA_AUTH_URL")
    if not auth_url:
        return None
    client = str(config.get("AGORA_INTROSPECTION_CLIENT_ID") or client_id)
    password = config.get("AGORA_INTROSPECTION_SECRET")
    if not password and config.get("AGORA_JWT_SECRET"):
        password = derived_client_secret(str(config["AGORA_JWT_SECRET"]), client)
    if not password:
        raise RuntimeError(
            "AGORA_AUTH_URL needs AGORA_INTROSPECTION_SECRET (or AGORA_JWT_SECRET) in the "
            "Flask config to call the auth service's introspection endpoint"
        )
    cache_seconds = _number(config, "AGORA_INTROSPECTION_CACHE_SECONDS", 2.0)
    if not 0 <= cache_seconds <= 30:
        raise RuntimeError("AGORA_INTROSPECTION_CACHE_SECONDS must be between 0 and 30")
    return Introspection(str(auth_url), client, str(password), cache_seconds=cache_seconds)


def revocation_switched_off(config: Mapping[str, Any]) -> bool:
    value = config.get("AGORA_REVOCATION_CHECK", True)
    return value is False or (isinstance(value, str) and value.strip().lower() in OFF)
