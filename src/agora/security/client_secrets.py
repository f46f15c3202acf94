"""The password a service holding the shared AGORA_JWT_SECRET uses to call the auth
service's introspection endpoint (docs/flask.md), so that a Flask app configured with
only that secret and AGORA_AUTH_URL sees logout.

Derived per client id with HMAC, so the secret itself never travels. Whoever holds the
JWT secret can already mint tokens; asking whether one is active gives it nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

LABEL = b"agora-introspection\0"


def derived_client_secret(jwt_secret: str, client_id: str) -> str:
    digest = hmac.new(jwt_secret.encode(), LABEL + client_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
