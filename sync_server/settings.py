"""Server settings: one pydantic-settings class, read from ``HUSHCHAT_SYNC_*`` variables.

Every field can also be given as ``HUSHCHAT_SYNC_<NAME>_FILE`` pointing at a file whose
content is the value (for Docker/Kubernetes secrets); an explicit variable wins over a file.
An optional env file (``--env-file`` or ``HUSHCHAT_SYNC_ENV_FILE``) is read too.
:meth:`Settings.problems` lists everything that keeps the server from starting, each
naming the variable to set; :meth:`Settings.ensure_startable` raises on the first list.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sync_server.errors import ConfigError

ENV_PREFIX = "HUSHCHAT_SYNC_"

# Values that look like someone copied an example instead of generating a secret.
_PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "replace-me", "replaceme", "example"}
)

DEFAULT_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]


class _FileSecretsSource(PydanticBaseSettingsSource):
    """Reads ``HUSHCHAT_SYNC_<NAME>_FILE`` variables: the value is the file's content."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the file content for one field, if its ``_FILE`` variable is set."""
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{ENV_PREFIX}{field_name.upper()}_FILE={path} cannot be read: {exc.strerror}"
            ) from exc
        return content.rstrip("\r\n"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """All settings of the sync server. Each description is copied into docs/server.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", env_file_encoding="utf-8", frozen=True
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("hushchat-sync-data"),
        description="Directory for the embedded SQLite database (created if missing).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host/db. "
        "Default: SQLite file hushchat-sync.sqlite3 in DATA_DIR.",
    )
    auto_migrate: bool = Field(
        default=True,
        description="Apply database migrations at start-up. When false the server refuses to "
        "start on an out-of-date schema; run `hushchat-sync migrate` first.",
    )
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Connections per process (SQLite: also the reader threads).",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite durability: NORMAL survives process crashes; FULL also power loss "
        "and OS crashes, at one fsync per write transaction.",
    )

    # --- secrets -------------------------------------------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="Random secret (>= 32 characters) that keys the ALTCHA challenge "
        "signatures and names the sign-in backoff counters (an HMAC of the e-mail address). "
        "Tokens and codes are stored as SHA-256 hashes that do not use it. Generate with "
        "`hushchat-sync gen-keys`.",
    )
    escrow_public_key: str | None = Field(
        default=None,
        description="Escrow X25519 public key (base64, 32 bytes; from `gen-keys`). The only "
        "escrow key `serve` needs: uploads are sealed to it and never opened by the server.",
    )
    escrow_kek: SecretStr | None = Field(
        default=None,
        description="Key-encryption key (base64, 32 bytes) that unwraps the escrow private "
        "key. Give it to `hushchat-sync escrow process` only, not to `serve`.",
    )
    escrow_private_key: SecretStr | None = Field(
        default=None,
        description="Escrow X25519 private key wrapped by ESCROW_KEK (from `gen-keys`). Give "
        "it to `hushchat-sync escrow process` only. (Older set-ups that give it and the KEK "
        "to `serve` keep working: `serve` then runs the escrow passes in the background and "
        "can open escrowed keys; check-config warns.)",
    )
    escrow_process_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="`escrow process --interval` default: seconds between passes (also "
        "the interval of the passes an older `serve` given the private key runs).",
    )

    # --- OIDC ----------------------------------------------------------------------------
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer URL (exactly as in the tokens' iss claim)."
    )
    oidc_audience: str | None = Field(
        default=None, description="Expected aud claim of access tokens (required with ISSUER)."
    )
    oidc_client_id: str | None = Field(
        default=None, description="Public client id the desktop app logs in with."
    )
    oidc_scopes: str = Field(
        default="openid email profile offline_access",
        description="Space-separated scopes the desktop app requests.",
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS URL; default: jwks_uri from the issuer's discovery."
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        description="Accepted JWS algorithms (JSON list). HS* and none are never accepted.",
    )
    oidc_jwks_cache_seconds: int = Field(
        default=3600, ge=10, description="How long fetched signing keys are trusted."
    )
    oidc_jwks_min_refresh_seconds: int = Field(
        default=10,
        ge=0,
        description="Minimum interval between JWKS refetches caused by unknown key ids.",
    )
    oidc_jwks_grace_seconds: int = Field(
        default=21600,
        ge=0,
        description="When the issuer cannot be reached after JWKS_CACHE_SECONDS, keep using "
        "the cached keys this much longer (0: answer 503 at once).",
    )
    oidc_jwks_retry_max_seconds: int = Field(
        default=300,
        ge=1,
        description="After a failed JWKS fetch nobody fetches again for 1 s, doubling after "
        "each further failure up to this.",
    )
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed.")
    oidc_require_token_type: str | None = Field(
        default=None,
        description="Accept only access tokens whose JWT typ header is this, e.g. at+jwt "
        "(RFC 9068; case-insensitive, application/ prefix optional). Default: any typ.",
    )
    oidc_max_token_lifetime_seconds: int = Field(
        default=86400,
        ge=0,
        description="Refuse access tokens whose exp - iat is longer than this (0: no limit).",
    )
    oidc_require_verified_email: bool = Field(
        default=True,
        description="Refuse access tokens without email_verified=true (recovery always "
        "requires it).",
    )
    oidc_allow_http: bool = Field(
        default=False,
        description="Allow a non-loopback http:// issuer (testing only; loopback is allowed).",
    )

    # --- local accounts ------------------------------------------------------------------
    local_accounts_enabled: bool = Field(
        default=False, description="Enable e-mail/password accounts (small installs)."
    )
    access_token_ttl_seconds: int = Field(default=900, ge=60, description="Local access tokens.")
    refresh_token_ttl_seconds: int = Field(
        default=30 * 86400, ge=300, description="Local refresh tokens (rotated on use)."
    )
    email_token_ttl_seconds: int = Field(
        default=86400, ge=300, description="E-mail verification and reset codes."
    )
    password_min_length: int = Field(default=10, ge=8, description="Minimum password length.")
    argon2_time_cost: int = Field(default=3, ge=1, description="Argon2id iterations.")
    argon2_memory_kib: int = Field(default=65536, ge=8192, description="Argon2id memory (KiB).")
    argon2_parallelism: int = Field(default=4, ge=1, description="Argon2id lanes.")
    argon2_max_concurrent: int = Field(
        default=2,
        ge=1,
        description="Password hashes computed at once per process (each needs "
        "ARGON2_MEMORY_KIB of memory); further sign-ins wait for a slot.",
    )
    argon2_max_waiting: int = Field(
        default=32,
        ge=0,
        description="Sign-ins that may wait for a hash slot; beyond that the server answers "
        "503 with Retry-After.",
    )
    sign_in_backoff_free_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins per e-mail address before the backoff starts.",
    )
    sign_in_backoff_max_seconds: int = Field(
        default=900,
        ge=1,
        description="Longest wait the sign-in backoff imposes: 1 s after the first failure "
        "beyond the free ones, doubling with each further failure up to this.",
    )
    altcha_max_number: int = Field(
        default=100_000, ge=1000, description="ALTCHA proof-of-work difficulty (search space)."
    )
    altcha_ttl_seconds: int = Field(default=600, ge=30, description="ALTCHA challenge lifetime.")

    # --- mail ----------------------------------------------------------------------------
    smtp_host: str | None = Field(default=None, description="SMTP server for outgoing mail.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(default=None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls, tls (implicit) or none (loopback only)."
    )
    smtp_from: str = Field(
        default="Hushchat Sync <no-reply@localhost>", description="From address of mails."
    )
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, description="SMTP timeout.")
    public_url: str | None = Field(
        default=None,
        description="Public base URL of this server (as clients reach it), quoted in mails. "
        "DPoP proofs name the URL they were made for: when set, proofs are checked against "
        "this scheme, host and path prefix instead of the URL the server sees (set it "
        "behind a reverse proxy that changes the host or scheme).",
    )

    # --- escrow recovery -----------------------------------------------------------------
    recovery_delay_seconds: int = Field(
        default=86400,
        ge=0,
        description="Wait between recovery start and completion (cancellable from any device).",
    )
    recovery_window_seconds: int = Field(
        default=7 * 86400, ge=60, description="How long a recovery can be completed after delay."
    )
    recovery_max_auth_age_seconds: int = Field(
        default=900, ge=30, description="Recovery needs a login at most this old (auth_time)."
    )

    # --- limits --------------------------------------------------------------------------
    max_record_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest record payload (bytes, decoded)."
    )
    max_request_bytes: int = Field(
        default=16 << 20, ge=4096, description="Largest request body (bytes)."
    )
    max_unauthenticated_body_bytes: int = Field(
        default=64 << 10,
        ge=1024,
        description="Largest request body read before the caller is authenticated (the "
        "sign-up and sign-in endpoints); authenticated endpoints check the token first.",
    )
    max_batch_records: int = Field(default=500, ge=1, description="Records per push.")
    max_page_size: int = Field(default=1000, ge=1, description="Largest pull page.")
    rate_limits_enabled: bool = Field(default=True, description="Enforce rate limits.")
    rate_limit_storage_url: str = Field(
        default="memory://",
        description="limits storage: memory:// (one process) or async+redis://host:6379/0.",
    )
    rate_limit_user: str = Field(default="1200/minute", description="Requests per account.")
    rate_limit_global: str = Field(default="100000/minute", description="All requests.")
    rate_limit_anonymous: str = Field(
        default="120/minute", description="Unauthenticated requests per client address."
    )
    rate_limit_sign_in: str = Field(
        default="10/minute", description="Sign-up, sign-in, reset and recovery per address."
    )
    rate_limit_auth_failures: str = Field(
        default="30/minute",
        description="Failed authentications (401) per client address; beyond it the address "
        "gets 429 for every authenticated call until the window moves on.",
    )
    rate_limit_ipv6_prefix: int = Field(
        default=64,
        ge=32,
        le=128,
        description="IPv6 clients are counted per network of this prefix length (one "
        "customer's /64 is one address); IPv4 clients per address.",
    )

    # --- device proofs (DPoP) -------------------------------------------------------------
    dpop_max_age_seconds: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How old a DPoP proof (its iat) may be; also how long its jti is "
        "remembered against replay.",
    )
    dpop_clock_skew_seconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="How far in the future a DPoP proof's iat may be (device clocks ahead).",
    )
    dpop_replay_cache_size: int = Field(
        default=100_000,
        ge=1000,
        description="Proof ids remembered per process when the rate-limit storage is "
        "memory://; beyond it the accepted proof age shrinks instead of forgetting (with "
        "Redis the jtis are kept there, shared by every process).",
    )

    # --- long-poll ---------------------------------------------------------------------------
    long_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="While a pull waits for changes, the database is re-checked this often "
        "(changes pushed to another process or replica); pushes to this process wake it "
        "at once.",
    )
    long_poll_max_waiters_per_device: int = Field(
        default=2,
        ge=1,
        description="Pulls of one device that may wait at once; more answer 429.",
    )
    long_poll_max_waiters_per_account: int = Field(
        default=32,
        ge=1,
        description="Pulls of one account that may wait at once (per process); more answer 429.",
    )

    # --- process -------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `serve` binds to.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes `serve` starts (`--workers`); they share the database.",
    )
    forwarded_allow_ips: str | None = Field(
        default=None, description="Proxies trusted for X-Forwarded-For (uvicorn setting)."
    )
    cleanup_interval_seconds: int = Field(
        default=3600, ge=1, description="Interval of the expired-token clean-up."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )
    log_format: Literal["json", "text"] = Field(default="json", description="Log format.")

    @field_validator("oidc_require_token_type")
    @classmethod
    def _normalise_token_type(cls, value: str | None) -> str | None:
        """``typ`` is a media type: compared case-insensitively, ``application/`` optional."""
        if value is None or not value.strip():
            return None
        return normalise_token_type(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments, environment, ``*_FILE`` variables, env file."""
        return (init_settings, env_settings, _FileSecretsSource(settings_cls), dotenv_settings)

    # --- derived -------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The configured database URL or the SQLite file in DATA_DIR."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / "hushchat-sync.sqlite3").resolve()
        return f"sqlite+aiosqlite:///{path}"

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite."""
        return self.effective_database_url.startswith("sqlite")

    @property
    def oidc_enabled(self) -> bool:
        """True when an OIDC issuer is configured."""
        return bool(self.oidc_issuer)

    @property
    def smtp_enabled(self) -> bool:
        """True when outgoing mail is configured."""
        return bool(self.smtp_host)

    def kek_bytes(self) -> bytes:
        """The decoded key-encryption key (call only after :meth:`ensure_startable`)."""
        assert self.escrow_kek is not None
        return base64.b64decode(self.escrow_kek.get_secret_value(), validate=True)

    def problems(self) -> list[str]:
        """Everything that stops the server from starting, one line per problem."""
        found: list[str] = []
        secret = self.secret_key.get_secret_value() if self.secret_key else None
        if secret is None:
            found.append(f"{ENV_PREFIX}SECRET_KEY is not set (run `hushchat-sync gen-keys`).")
        elif secret.strip().lower() in _PLACEHOLDERS or len(secret) < 32:
            found.append(f"{ENV_PREFIX}SECRET_KEY is a placeholder or shorter than 32 characters.")
        if self.escrow_public_key is not None:
            if not _is_public_key(self.escrow_public_key):
                found.append(
                    f"{ENV_PREFIX}ESCROW_PUBLIC_KEY must be the base64 of 32 bytes (from "
                    "`hushchat-sync gen-keys`)."
                )
        elif self.escrow_private_key is None or self.escrow_kek is None:
            found.append(
                f"{ENV_PREFIX}ESCROW_PUBLIC_KEY is not set (run `hushchat-sync gen-keys`; "
                f"give {ENV_PREFIX}ESCROW_PRIVATE_KEY and {ENV_PREFIX}ESCROW_KEK only to "
                "`hushchat-sync escrow process`)."
            )
        found.extend(self._kek_problems())
        return found + self._other_problems()

    def _kek_problems(self) -> list[str]:
        kek = self.escrow_kek.get_secret_value() if self.escrow_kek else None
        if kek is None:
            return []
        try:
            if len(base64.b64decode(kek, validate=True)) != 32:
                return [f"{ENV_PREFIX}ESCROW_KEK must be 32 bytes, base64-encoded."]
        except (binascii.Error, ValueError):
            return [f"{ENV_PREFIX}ESCROW_KEK is not valid base64."]
        return []

    def escrow_process_problems(self) -> list[str]:
        """What keeps ``hushchat-sync escrow process`` from opening escrows."""
        found: list[str] = []
        if self.escrow_private_key is None:
            found.append(
                f"{ENV_PREFIX}ESCROW_PRIVATE_KEY is not set (or pass --key-file): the escrow "
                "command needs the wrapped escrow private key from `hushchat-sync gen-keys`."
            )
        if self.escrow_kek is None:
            found.append(
                f"{ENV_PREFIX}ESCROW_KEK is not set: the escrow command needs the "
                "key-encryption key from `hushchat-sync gen-keys`."
            )
        found.extend(self._kek_problems())
        if self.escrow_public_key is not None and not _is_public_key(self.escrow_public_key):
            found.append(f"{ENV_PREFIX}ESCROW_PUBLIC_KEY must be the base64 of 32 bytes.")
        if self.public_url and not _is_acceptable_url(self.public_url, allow_http=True):
            found.append(f"{ENV_PREFIX}PUBLIC_URL must be an http:// or https:// URL.")
        return found

    def _other_problems(self) -> list[str]:
        found: list[str] = []
        if self.oidc_issuer:
            if not self.oidc_audience:
                found.append(f"{ENV_PREFIX}OIDC_AUDIENCE is required with OIDC_ISSUER.")
            if not self.oidc_client_id:
                found.append(f"{ENV_PREFIX}OIDC_CLIENT_ID is required with OIDC_ISSUER.")
            if not _is_acceptable_url(self.oidc_issuer, self.oidc_allow_http):
                found.append(
                    f"{ENV_PREFIX}OIDC_ISSUER must be an https:// URL (http:// only on loopback "
                    "or with OIDC_ALLOW_HTTP=true)."
                )
            bad = [a for a in self.oidc_algorithms if a not in DEFAULT_ALGORITHMS]
            if bad:
                found.append(
                    f"{ENV_PREFIX}OIDC_ALGORITHMS has unsupported entries {bad}; "
                    f"allowed: {DEFAULT_ALGORITHMS}."
                )
        if self.public_url and not _is_acceptable_url(self.public_url, allow_http=True):
            found.append(f"{ENV_PREFIX}PUBLIC_URL must be an http:// or https:// URL.")
        if self.local_accounts_enabled and not self.smtp_enabled:
            found.append(
                f"{ENV_PREFIX}SMTP_HOST is required with LOCAL_ACCOUNTS_ENABLED "
                "(verification mails)."
            )
        return found

    def warnings(self) -> list[str]:
        """Settings that work but probably are not what the operator wants."""
        found: list[str] = []
        if not self.oidc_enabled and not self.local_accounts_enabled:
            found.append(
                "Neither OIDC_ISSUER nor LOCAL_ACCOUNTS_ENABLED is set: nobody can sign in."
            )
        if self.escrow_private_key is not None or self.escrow_kek is not None:
            found.append(
                "ESCROW_PRIVATE_KEY/ESCROW_KEK are set for the server: `serve` then runs the "
                "escrow passes itself (in the background, never on the request path), so the "
                "server process can open escrowed keys. Give it only ESCROW_PUBLIC_KEY "
                "(`hushchat-sync escrow public-key` prints it) and run "
                "`hushchat-sync escrow process` where the private key and KEK are kept."
            )
        memory_limits = self.rate_limit_storage_url.startswith(("memory", "async+memory"))
        if self.workers > 1 and self.rate_limits_enabled and memory_limits:
            found.append(
                f"WORKERS={self.workers} with in-memory rate limits: each process counts on "
                "its own, so the effective limits are up to WORKERS times the configured "
                "ones; use RATE_LIMIT_STORAGE_URL=async+redis://… for exact limits."
            )
        return found

    def ensure_startable(self) -> None:
        """Raise :class:`ConfigError` naming every missing or wrong setting."""
        found = self.problems()
        if found:
            raise ConfigError("Cannot start: " + " ".join(found))


def normalise_token_type(value: str) -> str:
    """A JWT ``typ`` as compared: lower case, without the ``application/`` prefix (RFC 7515)."""
    lowered = value.strip().lower()
    return lowered.removeprefix("application/")


def _is_public_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text.strip(), validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _is_acceptable_url(url: str, allow_http: bool) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if allow_http or parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings from the environment (and ``env_file`` / ``HUSHCHAT_SYNC_ENV_FILE``)."""
    if env_file is None:
        configured = os.environ.get(f"{ENV_PREFIX}ENV_FILE")
        env_file = Path(configured) if configured else None
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"Env file {env_file} does not exist.")
    return Settings(_env_file=env_file)


__all__ = ["ENV_PREFIX", "Settings", "load_settings", "normalise_token_type"]
