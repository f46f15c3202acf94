"""Typed settings, read from AGORA_* environment variables and validated at start.

Settings are built once by the entry point (`agora serve`, tests) and passed in;
nothing reads the environment at import time.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agora.core.issuers import TrustedIssuer, check_trusted_issuers

log = logging.getLogger("agora.settings")

MIN_SECRET_BYTES = 32
# The async drivers the engine runs on, and the extra that brings each one.
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS = get_args(LogLevel)
DATABASE_DRIVERS = {"sqlite+aiosqlite": "aiosqlite", "postgresql+asyncpg": "postgres"}


class Settings(BaseSettings):
    # hide_input_in_errors: a refused settings object must never print its input, which
    # holds the secrets (`str(ValidationError)` showed 22 characters of a weak
    # AGORA_JWT_SECRET). `agora` explains each refused value itself (settings_errors).
    model_config = SettingsConfigDict(
        env_prefix="AGORA_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: Literal["dev", "test", "prod"] = "dev"
    # The OpenAPI document (/openapi.json) and Swagger UI (/docs): served unless env is
    # prod; in prod only with AGORA_OPENAPI=true. false turns them off everywhere.
    openapi: bool | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    data_dir: Path = Path("./var")
    log_level: LogLevel = "INFO"
    # /metrics (Prometheus) on the main port: on in dev and test, off in prod unless set.
    metrics_enabled: bool | None = None
    # Unset: console lines for dev on a terminal, JSON otherwise (agora.core.logs).
    log_format: Literal["console", "json"] | None = None
    # One `agora.access` line per request and per socket; off for benchmarks.
    access_log: bool = True

    # Persistence and transports; empty means the embedded backend.
    database_url: str = ""
    redis_url: str = ""
    amqp_url: str = ""
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    # Put in front of every Redis key (user:<id> included) to share one Redis between
    # deployments or test runs; empty in production so keys match docs/contracts.md exactly.
    redis_namespace: str = ""
    # Prefix of the keys that are the code's own (tickets, rate limits, ...).
    key_prefix: str = "agora:"
    # Suffix on exchange/queue names, to run side by side on one broker.
    amqp_name_suffix: str = ""
    # Unacked deliveries in flight: the user-events consumer applies up to 256 per batch
    # while the next batch gathers, so twice that keeps its batches full.
    amqp_prefetch: int = Field(512, ge=1)

    # Tokens.
    # HS256 signs with the shared secret; RS256/ES256/EdDSA sign with a private key
    # (AGORA_JWT_PRIVATE_KEY_FILE, else generated under AGORA_DATA_DIR/keys) and publish
    # the public key at /auth/.well-known/jwks.json. A service given AGORA_JWKS_URL
    # verifies with the published keys and needs no secret at all.
    jwt_algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    jwks_url: str = ""
    # A token naming an unknown kid refetches the JWKS at most once per kid and
    # jwks_refetch_interval; fetches for any kids are jwks_min_refetch_gap apart, so a
    # stream of made-up kids costs one fetch per gap and a real rotation still lands.
    jwks_refetch_interval: float = Field(30.0, ge=1)
    jwks_min_refetch_gap: float = Field(2.0, ge=0.1, le=60)
    jwt_issuer: str = "agora-auth"
    jwt_audience: str = "agora"
    token_ttl: int = Field(3600, ge=60, le=86400)
    token_leeway: int = Field(30, ge=0, le=60)
    verified_token_cache_size: int = Field(10_000, ge=0)
    # Peer issuers whose tokens are accepted too: a JSON list (agora.core.issuers,
    # docs/peers.md).
    trusted_issuers: list[TrustedIssuer] = []
    # RFC 7662 introspection (POST /auth/api/introspect, docs/flask.md): callers prove
    # themselves with HTTP Basic, this secret (or one derived from jwt_secret) as the
    # password.
    introspection_secret: SecretStr | None = None

    # Cookies: Secure may only be switched off in dev, for plain-http localhost.
    cookie_secure: bool = True
    # Keys the CSRF token (an HMAC of the session's jti, agora.web.csrf); the same on
    # every service. Unset: a key derived from AGORA_JWT_SECRET. Required in prod when
    # there is no AGORA_JWT_SECRET (key pairs only).
    csrf_secret: SecretStr | None = None

    # HTTP limits and browser policy (agora.web.security).
    max_body_bytes: int = Field(1_048_576, ge=1)
    # The request line and headers of one request, when uvicorn is reached without nginx
    # (agora.runtime.http_server): over it, or over MAX_HEADER_COUNT fields, 431.
    max_header_bytes: int = Field(32_768, ge=1024, le=1_048_576)

    # Audit trail (agora.core.audit): rows older than this many days are deleted (0: kept
    # forever); past this many 401s per source, reason and minute, only a count is written.
    audit_retention_days: int = Field(90, ge=0)
    audit_refusal_detail_per_minute: int = Field(10, ge=0)
    # Origins allowed to call the API from a browser, with cookies; empty means CORS off.
    # A JSON list or comma-separated: AGORA_CORS_ORIGINS=https://app.example.com,...
    cors_origins: Annotated[list[str], NoDecode] = []

    # argon2id cost; lower only in tests.
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    # Password hashes at once (agora.security.passwords): threads, and calls allowed to
    # wait for one, per lane; past that, 503 + Retry-After at once. Logins (checks) and
    # registrations (new hashes) have lanes of their own, so neither starves the other.
    password_login_workers: int = Field(2, ge=1, le=64)
    password_login_queue: int = Field(32, ge=0)
    password_register_workers: int = Field(1, ge=1, le=64)
    password_register_queue: int = Field(4, ge=0)

    # Registration throttling (services/auth/registration_throttle.py): registrations
    # per client IP in a fixed window, counted before any hashing; then 429.
    register_ip_max_attempts: int = Field(10, ge=1)
    register_ip_window: float = Field(3600.0, gt=0)

    # Publications: status cache, activity and idle sweeping.
    user_cache_ttl: int = Field(3600, ge=1)
    idle_timeout: int = Field(1800, ge=1)
    idle_sweep_interval: float = Field(60.0, gt=0)
    activity_write_interval: int = Field(60, ge=0)
    # Seconds a user's cached first page of publications lives (services/publications/
    # page_cache.py); 0 turns the page cache off. At most an hour (see that module).
    publication_page_cache_ttl: float = Field(300.0, ge=0, le=3600)
    outbox_poll_interval: float = Field(1.0, gt=0)
    # Auth: seconds between two looks for sessions whose token expired (a user whose
    # last live session ends is disconnected: services/auth/service.py).
    session_sweep_interval: float = Field(60.0, gt=0)

    # Login throttling (services/auth/throttle.py): attempts without success counted per
    # (login, client IP), per client IP, and per login from everywhere; going over a
    # limit blocks for a time that grows with each new block of the same key, up to a
    # cap. Seconds throughout.
    login_max_failures: int = Field(5, ge=1)  # per (login, client IP)
    login_ip_max_failures: int = Field(50, ge=1)
    login_failure_window: float = Field(900.0, gt=0)
    # Per login from every source: caps distributed guessing (ASVS V2.2.1: 100 an hour).
    login_global_max_failures: int = Field(100, ge=1)
    login_global_window: float = Field(3600.0, gt=0)
    # A source that logged in to a login stays exempt from that login's cap this long.
    login_known_source_ttl: float = Field(30 * 86400.0, gt=0)
    login_block_seconds: float = Field(60.0, gt=0)
    login_block_growth: float = Field(2.0, ge=1)
    login_block_max_seconds: float = Field(3600.0, gt=0)
    # How long a key's block level is remembered after its last block.
    login_block_memory: float = Field(86400.0, gt=0)

    # Real-time sockets (agora.realtime, docs/social.md). Seconds and bytes throughout.
    ws_ticket_ttl: int = Field(10, ge=1, le=300)
    # Tickets get this leeway past their exp, not the access tokens' token_leeway.
    ws_ticket_leeway: float = Field(2.0, ge=0, le=30)
    ws_max_message_bytes: int = Field(65_536, ge=256)
    ws_outbound_queue_bytes: int = Field(1_048_576, ge=1024)
    # How long a closing socket's error frame and close may take to go out before the
    # connection is cut anyway (a client that reads nothing never takes them).
    ws_close_grace: float = Field(2.0, gt=0)
    # Protocol pings by uvicorn (agora serve); a connection silent past the timeout drops.
    ws_ping_interval: float = Field(20.0, gt=0)
    ws_ping_timeout: float = Field(20.0, gt=0)
    # Presence entries expire unless refreshed (every ttl/3); recheck finds crashed peers.
    presence_ttl: float = Field(24.0, gt=0, lt=30)
    presence_recheck_interval: float = Field(15.0, gt=0)
    presence_max_users: int = Field(500, ge=1)
    social_max_content_chars: int = Field(4000, ge=1)
    # Whom a social chat and presence.query reach: users who share a messaging
    # conversation with the sender (read in the same database), or anyone.
    social_chat_reach: Literal["conversations", "anyone"] = "conversations"
    social_messages_per_window: int = Field(1000, ge=1)
    social_message_window: float = Field(3600.0, gt=0)
    social_connections_per_ip: int = Field(60, ge=1)
    social_connection_window: float = Field(60.0, gt=0)
    # Blocks after going over a socket limit grow like the login blocks.
    realtime_block_seconds: float = Field(60.0, gt=0)
    realtime_block_growth: float = Field(2.0, ge=1)
    realtime_block_max_seconds: float = Field(3600.0, gt=0)
    realtime_block_memory: float = Field(86400.0, gt=0)
    # On Redis the socket limiters count in the process and send their counts in one
    # call per interval, or once a subject has this many events pending (at most a
    # tenth of its limit): a subject gets at most P x (batch - 1) events past a limit
    # across P processes (ports/counters.py, docs/security.md). 1: a round trip per event.
    rate_limit_flush_interval: float = Field(0.1, gt=0, le=5)
    rate_limit_max_batch: int = Field(32, ge=1, le=1000)

    # Messaging (docs/messaging.md). Limits are per hour, per user and per IP; going over
    # blocks like the socket limits (realtime_block_*).
    messaging_messages_per_hour: int = Field(1000, ge=1)
    messaging_media_per_hour: int = Field(100, ge=1)
    messaging_messages_per_ip_per_hour: int = Field(5000, ge=1)
    messaging_media_per_ip_per_hour: int = Field(500, ge=1)
    messaging_max_message_chars: int = Field(4000, ge=1, le=64_000)
    messaging_group_max_members: int = Field(256, ge=2)
    messaging_group_max_title_chars: int = Field(200, ge=1)
    # A reconnecting device gets at most this many missed messages per conversation on
    # the socket; beyond, `recovered: false` tells it to page over REST.
    messaging_sync_max_messages: int = Field(1000, ge=1, le=10_000)
    # Typing indicators stop by themselves this long after the last refresh.
    messaging_typing_ttl: float = Field(5.0, gt=0, le=60)
    messaging_connections_per_ip: int = Field(60, ge=1)
    messaging_frames_per_minute: int = Field(600, ge=1)
    # The built web client (web/dist) served at / by the all-in-one process (`make run`);
    # unset: the checkout's web/dist when it was built (docs/web.md).
    web_dist_dir: Path | None = None
    # Media: stored on disk under media_dir (default <data_dir>/media), size cap, and the
    # content types accepted (checked against the file's own first bytes too).
    media_dir: Path | None = None
    # A media service of the deployment's own (PUT/GET/DELETE <url>/<id>, docs/messaging.md)
    # instead of the directory; its bearer token, if it wants one.
    media_url: str = ""
    media_token: SecretStr | None = None
    media_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # An upload whose body sends nothing for this long is refused (408) and its partial
    # file removed: uploads straight to an instance have no nginx body timeout.
    media_upload_idle_timeout: float = Field(30.0, gt=0)
    media_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "video/mp4",
            "audio/mpeg",
            "audio/ogg",
            "application/pdf",
        ]
    )
    # Offline notifications: empty logs them (the embedded default); a URL gets each
    # notification POSTed as JSON.
    notify_url: str = ""
    # gRPC: every process serves its services' gRPC API on this port (0: none). Messaging
    # finds users through auth's UserService at users_grpc_target; empty means the
    # UserService of this process (the embedded app, or a shared database).
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    users_grpc_target: str = ""
    users_grpc_deadline: float = Field(2.0, gt=0)
    users_grpc_retries: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _check_realtime(self) -> Settings:
        if self.realtime_block_max_seconds < self.realtime_block_seconds:
            raise ValueError(
                "AGORA_REALTIME_BLOCK_MAX_SECONDS must be >= AGORA_REALTIME_BLOCK_SECONDS"
            )
        if self.realtime_block_memory < self.realtime_block_max_seconds:
            raise ValueError(
                "AGORA_REALTIME_BLOCK_MEMORY must be >= AGORA_REALTIME_BLOCK_MAX_SECONDS"
            )
        # A crashed instance's users must show offline within a minute.
        if self.presence_ttl + self.presence_recheck_interval > 60:
            raise ValueError("AGORA_PRESENCE_TTL + AGORA_PRESENCE_RECHECK_INTERVAL must be <= 60")
        return self

    @model_validator(mode="after")
    def _check_login_throttle(self) -> Settings:
        if self.login_block_max_seconds < self.login_block_seconds:
            raise ValueError("AGORA_LOGIN_BLOCK_MAX_SECONDS must be >= AGORA_LOGIN_BLOCK_SECONDS")
        # A level forgotten while its block still runs would restart the growth.
        if self.login_block_memory < self.login_block_max_seconds:
            raise ValueError("AGORA_LOGIN_BLOCK_MEMORY must be >= AGORA_LOGIN_BLOCK_MAX_SECONDS")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.upper() not in LOG_LEVELS:  # refused here, to show the value as written
            raise ValueError(f"should be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        if not url:
            return url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError("is not a database URL") from None
        if parsed.drivername not in DATABASE_DRIVERS:
            raise ValueError(f"must use one of the drivers {', '.join(DATABASE_DRIVERS)}")
        if importlib.util.find_spec(parsed.get_driver_name()) is None:
            extra = DATABASE_DRIVERS[parsed.drivername]
            raise ValueError(f"needs {parsed.get_driver_name()}: pip install 'agora[{extra}]'")
        return url

    @field_validator("redis_url", "amqp_url")
    @classmethod
    def _check_broker_url(cls, url: str, info: ValidationInfo) -> str:
        schemes, module, extra = {
            "redis_url": (("redis", "rediss", "unix"), "redis", "redis"),
            "amqp_url": (("amqp", "amqps"), "aio_pika", "amqp"),
        }[info.field_name or ""]
        if not url:
            return url
        if urlsplit(url).scheme not in schemes or "://" not in url:
            raise ValueError(
                f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"needs {module}: pip install 'agora[{extra}]'")
        return url

    @field_validator("notify_url", "media_url", "jwks_url")
    @classmethod
    def _check_service_url(cls, url: str, info: ValidationInfo) -> str:
        if url and urlsplit(url).scheme not in ("http", "https"):
            name = f"AGORA_{(info.field_name or '').upper()}"
            raise ValueError(f"{name} must be an http:// or https:// URL")
        return url

    @field_validator("cors_origins", "media_allowed_types", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("web_dist_dir")
    @classmethod
    def _check_web_dist(cls, dist: Path | None) -> Path | None:
        # Named explicitly, it must be a build: a typo would serve nothing at / silently.
        if dist is not None and not (dist / "index.html").is_file():
            raise ValueError(f"{dist} holds no index.html: build the web client (make web)")
        return dist

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        return [check_origin(origin) for origin in origins]

    @model_validator(mode="after")
    def _check_trusted_issuers(self) -> Settings:
        strong = None if self.env == "dev" else MIN_SECRET_BYTES
        check_trusted_issuers(self.trusted_issuers, self.jwt_issuer, strong)
        return self

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.env != "dev":
            introspection = self.introspection_secret
            if introspection and len(introspection.get_secret_value()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"AGORA_INTROSPECTION_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                    f"outside dev (it is {len(introspection.get_secret_value())})"
                )
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            # Only HS256 needs a secret; with a key pair, a secret is optional (for
            # HS256 peers) but must still be strong when given.
            needed = self.jwt_algorithm == "HS256" and not self.jwks_url
            if (needed or secret) and len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(weak_secret("AGORA_JWT_SECRET", secret, self.env))
            csrf = self.csrf_secret.get_secret_value() if self.csrf_secret else ""
            if csrf and len(csrf.encode()) < MIN_SECRET_BYTES:
                raise ValueError(weak_secret("AGORA_CSRF_SECRET", csrf, self.env))
            if self.env == "prod" and not (csrf or secret):
                raise ValueError(
                    "AGORA_CSRF_SECRET must be set in prod when AGORA_JWT_SECRET is not: "
                    "it keys the CSRF token, and every service needs the same one"
                )
            if not self.cookie_secure:
                raise ValueError("AGORA_COOKIE_SECURE=false is only allowed with AGORA_ENV=dev")
        return self

    @property
    def metrics_served(self) -> bool:
        return self.metrics_enabled if self.metrics_enabled is not None else self.env != "prod"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    @property
    def openapi_served(self) -> bool:
        return self.openapi if self.openapi is not None else self.env != "prod"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'agora.db').resolve()}"

    @property
    def secret(self) -> str:
        if self.jwt_secret is None:
            raise RuntimeError("settings were not loaded with load_settings()")
        return self.jwt_secret.get_secret_value()


def weak_secret(name: str, secret: str, env: str) -> str:
    """The refusal of a short secret: its length, never a character of it."""
    return (
        f"{name} must be at least {MIN_SECRET_BYTES} bytes outside dev (AGORA_ENV={env}); "
        f"the one given has {len(secret.encode())}"
    )


def check_origin(origin: str) -> str:
    """One CORS origin exactly as a browser sends it: `scheme://host[:port]`, nothing more.

    Credentials (cookies) are always allowed, so `*` and `null` (sandboxed frames,
    file://) are refused: either would let any page act as the logged-in user.
    """
    parts = urlsplit(origin.strip().lower())
    if origin.strip() in ("*", "null") or parts.scheme not in ("http", "https"):
        raise ValueError(
            f"CORS origin {origin!r} must be http(s)://host[:port]; "
            "'*' and 'null' are refused because cookies are allowed"
        )
    # A browser's Origin never ends in "/": "https://app.example.com/" would never match.
    extra = parts.path or parts.query or parts.fragment or "@" in parts.netloc
    if not parts.hostname or extra or (parts.port is None and parts.netloc.endswith(":")):
        raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port], no path")
    return f"{parts.scheme}://{parts.netloc}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, then fill in a dev secret if needed.

    In dev without AGORA_JWT_SECRET, a random secret is generated once and kept in
    AGORA_DATA_DIR so that tokens survive a restart.
    """
    return with_dev_secret(Settings(**overrides))  # type: ignore[arg-type]


def with_dev_secret(settings: Settings) -> Settings:
    """The dev secret filled in (the file written at the first start); validated settings
    only, so that nothing is written for a start that is refused."""
    if settings.env != "dev":
        return settings  # the validator has seen to what production needs
    # An empty AGORA_JWT_SECRET (a blank line in an env file) counts as unset: an empty
    # HMAC key would make every login fail. Outside dev the validator refused it already.
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings
    secret_file = settings.data_dir / "jwt_secret"
    secret = secret_file.read_text().strip() if secret_file.exists() else ""
    if not secret:  # absent, or left empty by a start that died before writing it
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        secret_file.touch(mode=0o600)
        secret_file.chmod(0o600)  # touch keeps the mode of a file that was already there
        secret_file.write_text(secret)
        log.warning(
            "dev mode: generated a JWT secret in %s; set AGORA_JWT_SECRET in production",
            secret_file,
        )
    return settings.model_copy(update={"jwt_secret": SecretStr(secret)})
