"""Signing and verification keys: a key set addressed by `kid`.

Each key carries exactly one algorithm (RFC 8725 §3.1): the verifier looks a token's
key up by `kid` and accepts only that key's algorithm, so a token cannot pick its own
algorithm (the HS256-with-a-public-key trick has nothing to work with).

- HMAC (HS256): a shared secret, for peers that use one. Never published.
- RS256 / ES256 / EdDSA: private keys kept as PEM files under `AGORA_DATA_DIR/keys`
  (or given as PEM files); their public halves are published as a JWKS so that the
  other services verify without holding any secret.

Rotation makes a new signing key; older keys keep verifying until every token they
signed has expired, then they are pruned.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

log = logging.getLogger("agora.keys")

ASYMMETRIC = ("RS256", "ES256", "EdDSA")
# PyJWT's JWK converter per asymmetric algorithm (typed Any: its stubs hide to/from_jwk).
JWK_CONVERTERS: dict[str, Any] = {
    "RS256": RSAAlgorithm,
    "ES256": ECAlgorithm,
    "EdDSA": OKPAlgorithm,
}
ALGORITHMS = ("HS256", *ASYMMETRIC)
MANIFEST = "keyset.json"


@dataclass(frozen=True)
class Key:
    kid: str
    alg: str
    verifying: Any  # public key object, or the HMAC secret
    signing: Any | None = None  # private key object, or the HMAC secret; None = verify only
    retired_at: int | None = None

    @property
    def signer(self) -> Any:
        if self.signing is None:
            raise RuntimeError(f"key {self.kid} can only verify")
        return self.signing

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = JWK_CONVERTERS[self.alg].to_jwk(self.verifying, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def thumbprint_kid(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint: the kid is derived from the public key itself."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())[:22]


def hmac_key(secret: str) -> Key:
    # The kid names the secret without revealing it: a short hash of a long random secret.
    kid = "hs256-" + _b64(hashlib.sha256(b"agora-kid:" + secret.encode()).digest())[:12]
    return Key(kid=kid, alg="HS256", verifying=secret.encode(), signing=secret.encode())


def generate_private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose from {ASYMMETRIC}")


def algorithm_of(private_or_public: Any) -> str:
    if isinstance(private_or_public, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(private_or_public, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if private_or_public.curve.name != "secp256r1":
            raise ValueError("only P-256 EC keys are accepted (ES256)")
        return "ES256"
    if isinstance(private_or_public, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported key type {type(private_or_public).__name__}")


def key_from_private(private: Any, retired_at: int | None = None) -> Key:
    alg = algorithm_of(private)
    public = private.public_key()
    draft = Key(kid="", alg=alg, verifying=public)
    return Key(
        kid=thumbprint_kid(draft.public_jwk()),
        alg=alg,
        verifying=public,
        signing=private,
        retired_at=retired_at,
    )


def key_from_public(pem: str) -> Key:
    """A verify-only key from PEM text, named by its thumbprint."""
    public = serialization.load_pem_public_key(pem.encode())
    alg = algorithm_of(public)
    draft = Key(kid="", alg=alg, verifying=public)
    return Key(kid=thumbprint_kid(draft.public_jwk()), alg=alg, verifying=public)


def load_private_pem(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def jwk_algorithm(jwk: dict[str, Any]) -> str | None:
    """The one algorithm a JWK's key type fits (RSA: RS256, P-256: ES256, Ed25519: EdDSA)."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        return "RS256"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    return None


def _key_from_jwk(jwk: object, permitted: set[str]) -> Key:
    """One verify-only key; ValueError saying why it cannot be used."""
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"use is {jwk.get('use')!r}, not 'sig'")
    fits = jwk_algorithm(jwk)
    alg = jwk.get("alg", fits)
    if alg is None:
        raise ValueError(f"no alg and kty {jwk.get('kty')!r}/crv {jwk.get('crv')!r} fits none")
    if alg != fits:
        raise ValueError(f"alg {alg!r} does not fit kty {jwk.get('kty')!r}")
    if alg not in permitted:
        raise ValueError(f"{alg} is not among the allowed algorithms {sorted(permitted)}")
    try:
        public = JWK_CONVERTERS[alg].from_jwk(jwk)
    except Exception as exc:  # PyJWT raises several kinds for a malformed key
        raise ValueError(f"malformed {alg} key") from exc
    if algorithm_of(public) != alg or hasattr(public, "private_bytes"):
        raise ValueError(f"not a {alg} public key")
    if alg == "RS256" and public.key_size < 2048:
        raise ValueError("RSA key shorter than 2048 bits")
    kid = jwk.get("kid")
    if kid is None:
        kid = thumbprint_kid(jwk)
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid is not a string")
    return Key(kid=kid, alg=alg, verifying=public)


class KeySet:
    """The keys a service verifies with, by kid; at most one of them signs."""

    def __init__(self, keys: list[Key], signing_kid: str | None) -> None:
        self._by_kid = {key.kid: key for key in keys}
        if signing_kid is not None and self._by_kid[signing_kid].signing is None:
            raise ValueError("the signing key has no private half")
        self.signing_kid = signing_kid

    @property
    def signing_key(self) -> Key:
        if self.signing_kid is None:
            raise RuntimeError("this key set can only verify")
        return self._by_kid[self.signing_kid]

    def get(self, kid: str) -> Key | None:
        return self._by_kid.get(kid)

    def keys(self) -> list[Key]:
        return list(self._by_kid.values())

    def hmac(self) -> Key | None:
        return next((k for k in self._by_kid.values() if k.alg == "HS256"), None)

    def jwks(self) -> dict[str, Any]:
        """Public keys only: an HMAC secret is never published."""
        return {"keys": [k.public_jwk() for k in self._by_kid.values() if k.alg in ASYMMETRIC]}

    def merged(self, other: KeySet) -> KeySet:
        return KeySet(self.keys() + other.keys(), self.signing_kid)

    @classmethod
    def from_secret(cls, secret: str) -> KeySet:
        key = hmac_key(secret)
        return cls([key], key.kid)

    @classmethod
    def from_jwks(
        cls,
        document: dict[str, Any],
        allowed: Iterable[str] = ASYMMETRIC,
        source: str = "JWKS",
    ) -> KeySet:
        """A verify-only set from a published JWKS, with the keys that fit `allowed`.

        A key without `alg` gets the one algorithm its `kty`/`crv` allows (RFC 7517
        makes `alg` optional); one without `kid` is named by its RFC 7638 thumbprint.
        Every entry left out is logged with the reason, so an operator sees why a
        peer's tokens are refused.
        """
        permitted = set(allowed) & set(ASYMMETRIC)
        keys = []
        entries = document.get("keys")
        for jwk in entries if isinstance(entries, list) else []:
            try:
                keys.append(_key_from_jwk(jwk, permitted))
            except ValueError as why:
                kid = jwk.get("kid") if isinstance(jwk, dict) else None
                log.warning("%s key %r dropped: %s", source, kid, why)
        return cls(keys, None)


class KeyDirectory:
    """Private keys as PEM files plus a manifest, under AGORA_DATA_DIR/keys."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        return json.loads(file.read_text()) if file.exists() else {"signing": None, "keys": {}}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, self.path / MANIFEST)  # atomic: readers never see half a file

    def load(self) -> KeySet:
        manifest = self._manifest()
        keys = [
            key_from_private(load_private_pem(self.path / f"{kid}.pem"), meta.get("retired_at"))
            for kid, meta in manifest["keys"].items()
        ]
        return KeySet(keys, manifest["signing"])

    def rotate(self, alg: str, keep_for: int) -> Key:
        """Add a new signing key; retire the old one; prune keys retired over `keep_for` s ago."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = generate_private_key(alg)
        key = key_from_private(private)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem_file = self.path / f"{key.kid}.pem"
        pem_file.touch(mode=0o600)
        pem_file.write_bytes(pem)
        now = int(time.time())
        manifest = self._manifest()
        for kid, meta in list(manifest["keys"].items()):
            if kid == manifest["signing"]:
                meta["retired_at"] = now
            elif meta.get("retired_at") and meta["retired_at"] + keep_for < now:
                del manifest["keys"][kid]
                (self.path / f"{kid}.pem").unlink(missing_ok=True)
        manifest["keys"][key.kid] = {"alg": alg, "created_at": now, "retired_at": None}
        manifest["signing"] = key.kid
        self._write_manifest(manifest)
        return key

    def load_or_create(self, alg: str, keep_for: int) -> KeySet:
        keyset = self.load()
        if keyset.signing_kid is None or keyset.signing_key.alg != alg:
            self.rotate(alg, keep_for)
            keyset = self.load()
        return keyset
