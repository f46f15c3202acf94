"""The client credentials a service presents to auth (introspection, gRPC UserService):
the shared AGORA_INTROSPECTION_SECRET, or the per-client one derived from the JWT secret."""

from __future__ import annotations

from agora.security.client_secrets import ClientSecrets, derived_client_secret

JWT = "j" * 40
SHARED = "s" * 40


def test_the_derived_secret_is_per_client() -> None:
    clients = ClientSecrets(jwt_secret=JWT)
    assert clients.accepts("messaging", derived_client_secret(JWT, "messaging"))
    assert not clients.accepts("social", derived_client_secret(JWT, "messaging"))
    assert not clients.accepts("", derived_client_secret(JWT, ""))
    assert clients.password_for("messaging") == derived_client_secret(JWT, "messaging")


def test_the_shared_secret_serves_a_key_pair_deployment_without_jwt_secret() -> None:
    clients = ClientSecrets(shared=SHARED)
    assert clients.accepts("messaging", SHARED)
    assert not clients.accepts("messaging", derived_client_secret(JWT, "messaging"))
    assert ClientSecrets(jwt_secret=JWT, shared=SHARED).password_for("messaging") == SHARED


def test_nothing_set_accepts_nothing_and_sends_nothing() -> None:
    clients = ClientSecrets()
    assert not clients.accepts("messaging", "")
    assert not clients.accepts("messaging", "anything")
    assert clients.password_for("messaging") is None
