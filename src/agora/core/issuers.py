"""AGORA_TRUSTED_ISSUERS: the platform's other services whose tokens Agora accepts.

One entry per peer issuer, validated when the settings are built (docs/peers.md):

    [{"issuer": "billing", "algorithms": ["HS256"], "secret": "<32+ bytes>"},
     {"issuer": "https://id.example.com", "algorithms": ["RS256"],
      "jwks_url": "https://id.example.com/jwks.json", "audience": "agora"}]

Exactly one key source per issuer: `secret` (HS256 only), `public_key` (PEM text) or
`jwks_url`. The algorithms an issuer may use are its own: a token naming that issuer
is verified with that issuer's keys and algorithms, nothing else.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

PeerAlgorithm = Literal["HS256", "RS256", "ES256", "EdDSA"]
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")


def public_key_algorithm(pem: str) -> str:
    """The one algorithm a PEM public key can verify; ValueError when none we accept."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("public_key is not a PEM public key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("RSA public_key must be at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError("public_key must be RSA, EC P-256 or Ed25519")


class TrustedIssuer(BaseModel):
    # Errors never echo the entry: it may hold a secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    issuer: str = Field(min_length=1, max_length=512)
    algorithms: list[PeerAlgorithm] = Field(min_length=1)
    secret: SecretStr | None = None
    jwks_url: str | None = None
    public_key: str | None = None
    # When set, the peer's tokens must carry it in `aud`; when unset, `aud` is not read.
    audience: str | None = None

    @field_validator("jwks_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("jwks_url must be an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _check_keys(self) -> TrustedIssuer:
        sources = [n for n in ("secret", "jwks_url", "public_key") if getattr(self, n)]
        if len(sources) != 1:
            raise ValueError(
                f"issuer {self.issuer!r}: give exactly one of secret, jwks_url, public_key "
                f"(got {', '.join(sources) or 'none'})"
            )
        algorithms = set(self.algorithms)
        if self.secret is not None and algorithms != {"HS256"}:
            raise ValueError(f"issuer {self.issuer!r}: a secret signs HS256 only")
        if self.secret is None and "HS256" in algorithms:
            raise ValueError(f"issuer {self.issuer!r}: HS256 needs a secret, not a public key")
        if self.public_key is not None:
            alg = public_key_algorithm(self.public_key)
            if alg not in algorithms:
                raise ValueError(
                    f"issuer {self.issuer!r}: the public_key is {alg}, not in {self.algorithms}"
                )
        return self

    def secret_bytes(self) -> bytes:
        return self.secret.get_secret_value().encode() if self.secret else b""


def check_trusted_issuers(
    issuers: list[TrustedIssuer], own_issuer: str, min_secret_bytes: int | None
) -> None:
    """Whole-list rules: unique names, none of them Agora's own, strong secrets.

    `min_secret_bytes` None (dev) lets a short secret through, as for AGORA_JWT_SECRET.
    A refused secret is never printed: only its length is.
    """
    seen: set[str] = set()
    for entry in issuers:
        if entry.issuer == own_issuer:
            raise ValueError(
                f"AGORA_TRUSTED_ISSUERS: {entry.issuer!r} is Agora's own issuer (AGORA_JWT_ISSUER)"
            )
        if entry.issuer in seen:
            raise ValueError(f"AGORA_TRUSTED_ISSUERS: {entry.issuer!r} is listed twice")
        seen.add(entry.issuer)
        length = len(entry.secret_bytes())
        if min_secret_bytes is not None and entry.secret is not None and length < min_secret_bytes:
            raise ValueError(
                f"AGORA_TRUSTED_ISSUERS: the secret of {entry.issuer!r} is {length} bytes; "
                f"at least {min_secret_bytes} are needed outside dev"
            )
