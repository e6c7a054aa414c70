"""Stored shapes (SQLAlchemy 2 ORM). API shapes live in :mod:`sync_server.protocol`.

Every row that belongs to a user carries ``account_id`` and is deleted with the account.
Tokens and codes are stored only as SHA-256 hashes of high-entropy random values.
Migrations in ``sync_server/migrations/versions`` must match these tables; a unit test
compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (for migrations)."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store as UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_TS = UTCDateTime()
_FK_ACCOUNT = "accounts.id"


class Account(Base):
    """A user, keyed by OIDC issuer + subject (local accounts use issuer ``local``)."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_accounts_issuer_subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(_TS)
    #: No recovery may start before this (set after an e-mail change or password reset).
    recovery_blocked_until: Mapped[datetime | None] = mapped_column(_TS)


class AccountEmail(Base):
    """Every verified address ever seen for an account: recovery notices go to all of them,
    so an address changed at the identity provider cannot silence the old one."""

    __tablename__ = "account_emails"

    account_id: Mapped[str] = mapped_column(
        ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(_TS)


class Device(Base):
    """A device of an account, registered on first use of its id.

    ``jkt`` is the RFC 7638 thumbprint of the device's DPoP key, bound at registration
    (the id is the same thumbprint; both are kept so a mismatch is refused, not assumed
    away). A revoked device's row stays: its key can never be used on the account again.
    """

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_account_jkt", "account_id", "jkt", unique=True),)

    account_id: Mapped[str] = mapped_column(
        ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(_TS)
    last_seen_at: Mapped[datetime] = mapped_column(_TS)
    revoked_at: Mapped[datetime | None] = mapped_column(_TS)
    jkt: Mapped[str | None] = mapped_column(String(64))


class TokenBinding(Base):
    """Binds an OIDC access token (by hash) to the first device that used it."""

    __tablename__ = "token_bindings"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(_TS, index=True)


class Record(Base):
    """One client-encrypted record; the payload is opaque to the server."""

    __tablename__ = "records"
    # Partial (seq > 0, which every stored seq is): only a query that says so — the pull —
    # can use it, so the push's per-id probe always takes the primary key (migration 0004).
    __table_args__ = (
        Index(
            "ix_records_account_seq",
            "account_id",
            "seq",
            unique=True,
            postgresql_where=text("seq > 0"),
            sqlite_where=text("seq > 0"),
        ),
    )

    account_id: Mapped[str] = mapped_column(
        ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(BigInteger)
    parent_revision: Mapped[int | None] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    key_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(_TS)


class Escrow(Base):
    """The account's Standard-tier key, sealed to the server's escrow public key."""

    __tablename__ = "escrow"

    account_id: Mapped[str] = mapped_column(
        ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(64))
    server_key_id: Mapped[str] = mapped_column(String(32))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    device_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_TS)
    updated_at: Mapped[datetime] = mapped_column(_TS)


class Recovery(Base):
    """A recovery request: pending → ready → completed, or cancelled | expired.

    ``sealed_answer`` is written by ``hushchat-sync escrow process`` (the only code that
    holds the escrow private key): the escrowed key sealed to ``device_public_key``.
    ``cancel_token_hash`` is the SHA-256 of the single-use cancel link mailed at start.
    """

    __tablename__ = "recoveries"
    __table_args__ = (Index("ix_recoveries_cancel_token_hash", "cancel_token_hash", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(String(64))
    device_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_TS)
    not_before: Mapped[datetime] = mapped_column(_TS)
    expires_at: Mapped[datetime] = mapped_column(_TS)
    finished_at: Mapped[datetime | None] = mapped_column(_TS)
    finished_by_device: Mapped[str | None] = mapped_column(String(64))
    approved_by_device: Mapped[str | None] = mapped_column(String(64))
    ready_at: Mapped[datetime | None] = mapped_column(_TS)
    sealed_answer: Mapped[bytes | None] = mapped_column(LargeBinary)
    answer_key_id: Mapped[str | None] = mapped_column(String(64))
    cancel_token_hash: Mapped[str | None] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(String(32))


class AuditEvent(Base):
    """Escrow/recovery/device audit trail. Kept after account deletion (no FK)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_TS)


class LocalUser(Base):
    """E-mail/password credentials of a local account."""

    __tablename__ = "local_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    verified_at: Mapped[datetime | None] = mapped_column(_TS)
    account_id: Mapped[str | None] = mapped_column(ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(_TS)


class EmailToken(Base):
    """Single-use e-mail code (verification or password reset), stored hashed."""

    __tablename__ = "email_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    local_user_id: Mapped[str] = mapped_column(ForeignKey("local_users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(_TS, index=True)
    used_at: Mapped[datetime | None] = mapped_column(_TS)


class LocalToken(Base):
    """Local access or refresh token (hashed); refresh tokens rotate within a family."""

    __tablename__ = "local_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey(_FK_ACCOUNT, ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    auth_time: Mapped[datetime] = mapped_column(_TS)
    expires_at: Mapped[datetime] = mapped_column(_TS, index=True)
    used_at: Mapped[datetime | None] = mapped_column(_TS)


class UsedChallenge(Base):
    """ALTCHA challenges already redeemed (replay protection) until they expire."""

    __tablename__ = "used_challenges"

    challenge: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(_TS, index=True)
