"""The password a service holding the shared AGORA_JWT_SECRET uses to call the auth
service's introspection endpoint (docs/flask.md), so that a Flask app configured with
only that secret and AGORA_AUTH_URL sees logout.

Derived per client id with HMAC, so the secret itself never travels. Whoever holds the
JWT secret can already mint tokens; asking whether one is active gives it nothing more.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from pydantic import SecretStr

from agora.core.settings import Settings

LABEL = b"agora-introspection\0"


def derived_client_secret(jwt_secret: str, client_id: str) -> str:
    digest = hmac.new(jwt_secret.encode(), LABEL + client_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic_credentials(encoded: str) -> tuple[str, str] | None:
    """`(client_id, password)` of HTTP Basic credentials (the part after `Basic `), or
    None when they cannot be read or name no client."""
    try:
        client_id, colon, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if client_id and colon else None


@dataclass(frozen=True, slots=True)
class ClientSecrets:
    """The passwords auth accepts from a service calling as `client_id` (introspection,
    gRPC UserService): the shared `AGORA_INTROSPECTION_SECRET`, and the one derived
    from `AGORA_JWT_SECRET` for that client id. Either may be unset."""

    jwt_secret: str | None = None
    shared: str | None = None

    def accepts(self, client_id: str, password: str) -> bool:
        candidates = [self.shared] if self.shared else []
        if self.jwt_secret:
            candidates.append(derived_client_secret(self.jwt_secret, client_id))
        sent = password.encode()
        # Every candidate compared, in constant time each: which one matched does not leak.
        matched = [hmac.compare_digest(sent, candidate.encode()) for candidate in candidates]
        return bool(client_id) and any(matched)

    def password_for(self, client_id: str) -> str | None:
        """What this process sends when it calls auth as `client_id` (None: nothing)."""
        if self.shared:
            return self.shared
        return derived_client_secret(self.jwt_secret, client_id) if self.jwt_secret else None


def client_secrets(settings: Settings) -> ClientSecrets:
    """The process's client credentials towards auth, from its settings."""

    def value(secret: SecretStr | None) -> str | None:
        return (secret.get_secret_value() if secret is not None else "") or None

    return ClientSecrets(value(settings.jwt_secret), value(settings.introspection_secret))
