"""Wire format of the sync API, shared with the desktop client (``app/sync/protocol.py``).

These pydantic models are the JSON bodies of ``/v1/*``. Byte strings travel as standard
base64 (RFC 4648 §4, with padding). Records are opaque to the server: the client encrypts
the payload with AEAD whose associated data binds user, record id, kind, revision, deleted
flag and key id, so the server cannot swap, replay or un-delete records undetected.

Push semantics, per record, applied in request order:

* no stored record: saved when ``parent_revision`` is null, else ``conflict``;
* stored revision == pushed revision: a byte-identical re-push is ``saved`` with
  ``duplicate=true`` (a no-op); different content is a ``conflict``;
* ``parent_revision`` == stored revision and ``revision`` > stored revision: ``saved``
  (compare-and-swap);
* otherwise ``conflict`` carrying the server's copy; the client merges and pushes again;
* ``rejected`` (never retried as is): the kind differs from the stored record's, revision
  not above parent, or a tombstone would be revived.

With ``atomic=true`` the batch is applied only if every record is saved; otherwise
nothing is written and the records that would have been saved report ``aborted``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

PROTOCOL_VERSION = 1
#: Largest revision/cursor: exactly representable in JSON numbers everywhere (2**53 - 1).
MAX_SAFE_INTEGER = 2**53 - 1

DEVICE_HEADER = "X-Hushchat-Device"
DEVICE_NAME_HEADER = "X-Hushchat-Device-Name"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
RECORD_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
KIND_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
KEY_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
#: Escrowed Standard sync key ids (the client's ``new_key_id``: 16 hex characters).
ESCROW_KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _decode_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not valid base64") from exc
    return value


def _encode_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(_encode_base64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "pattern": BASE64_PATTERN}),
]


X25519PublicKeyBytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(_encode_base64, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64",
            "pattern": r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$",
            "description": "Raw 32-byte X25519 public key, base64.",
        }
    ),
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordIn(_Wire):
    """A record as pushed by a client."""

    id: Annotated[str, Field(pattern=RECORD_ID_PATTERN, description="Client-chosen id.")]
    kind: Annotated[str, Field(pattern=KIND_PATTERN, description="e.g. chat, message.")]
    revision: Annotated[int, Field(ge=1, le=MAX_SAFE_INTEGER, description="New revision number.")]
    parent_revision: Annotated[
        int | None, Field(ge=1, le=MAX_SAFE_INTEGER, description="Revision this one replaces.")
    ] = None
    deleted: bool = Field(default=False, description="True for a tombstone.")
    key_id: Annotated[str, Field(pattern=KEY_ID_PATTERN, description="Encrypting key id.")]
    payload: Base64Bytes = Field(description="AEAD ciphertext (base64).")


class RecordOut(_Wire):
    """A stored record as returned by the server."""

    id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    device_id: str = Field(description="Device that pushed this revision.")
    size: int = Field(description="Payload size in bytes.")
    seq: int = Field(description="Per-user sequence number of this change (the cursor).")
    updated_at: datetime
    payload: Base64Bytes


class PushRequest(_Wire):
    """``POST /v1/sync/push`` body."""

    records: list[RecordIn] = Field(min_length=1)
    atomic: bool = Field(default=False, description="All records saved, or none.")


PushStatus = Literal["saved", "conflict", "rejected", "aborted"]


class PushResult(_Wire):
    """Outcome for one pushed record, in request order."""

    id: str
    status: PushStatus
    revision: int = Field(description="The pushed revision.")
    seq: int | None = Field(default=None, description="Sequence number when saved.")
    duplicate: bool = Field(default=False, description="Saved earlier; this push was a no-op.")
    reason: str | None = Field(default=None, description="Why it was rejected or conflicted.")
    server_record: RecordOut | None = Field(
        default=None, description="The server's copy, on conflict."
    )


class PushResponse(_Wire):
    """``POST /v1/sync/push`` answer."""

    applied: bool = Field(description="False when an atomic batch was not applied.")
    results: list[PushResult]
    cursor: int = Field(description="The account's newest sequence number after the push.")


class OidcMeta(_Wire):
    """How clients log in with OIDC (authorization code + PKCE, loopback redirect)."""

    issuer: str
    client_id: str
    audience: str
    scopes: list[str]


class EscrowMeta(_Wire):
    """The server's escrow public key."""

    algorithm: str
    public_key: Base64Bytes
    key_id: str


class LimitsMeta(_Wire):
    """Size limits clients must respect."""

    max_record_bytes: int
    max_request_bytes: int
    max_batch_records: int
    max_page_size: int


class Meta(_Wire):
    """``GET /v1/meta``."""

    server_version: str
    protocol_version: int
    oidc: OidcMeta | None
    local_accounts: bool
    escrow: EscrowMeta
    limits: LimitsMeta
    recovery_delay_seconds: int


class Me(_Wire):
    """``GET /v1/me``."""

    id: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    cursor: int
    device_id: str
    created_at: datetime


class DeviceOut(_Wire):
    """A device of the account."""

    id: str
    name: str | None
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    current: bool


class DeviceList(_Wire):
    """``GET /v1/devices``."""

    devices: list[DeviceOut]


class EscrowPut(_Wire):
    """``PUT /v1/escrow``: the Standard-tier key sealed to the escrow public key.

    ``sealed_key`` is a sealed box (see ``sync_server.sealing``) with associated data
    ``hushchat-escrow-v1:{account id}:{key_id}``. Only the Standard tier can be escrowed.
    """

    tier: Literal["standard"]
    key_id: Annotated[str, Field(pattern=ESCROW_KEY_ID_PATTERN)] = Field(
        description="Id of the client's Standard sync key (part of the associated data)."
    )
    server_key_id: str = Field(
        max_length=64, description="key_id of the escrow public key used (from /v1/meta)."
    )
    sealed_key: Base64Bytes = Field(
        description="Sealed box v1 of the key material: 77 to 317 bytes. The server checks "
        "its shape only; it cannot open it."
    )


class AuditEventOut(_Wire):
    """One audit-trail entry."""

    event: str
    device_id: str | None
    created_at: datetime


RecoveryStatus = Literal["pending", "ready", "completed", "cancelled", "expired"]


class RecoveryOut(_Wire):
    """A recovery request.

    ``pending``: waiting for ``not_before`` (any other device may cancel or approve);
    ``ready``: the escrow command sealed the answer, the starting device may complete;
    then ``completed``, or ``cancelled`` / ``expired``.
    """

    id: str
    status: RecoveryStatus
    device_id: str
    created_at: datetime
    not_before: datetime
    expires_at: datetime


class ChangesResponse(_Wire):
    """``GET /v1/sync/changes`` answer: changes with seq > cursor, oldest first."""

    changes: list[RecordOut]
    cursor: int = Field(description="Pass this as ?cursor= next time (never decreases).")
    has_more: bool
    recoveries: list[RecoveryOut] = Field(
        default_factory=list,
        description="The account's pending and ready recoveries (every answer), so each "
        "device can warn its user and cancel one it did not start.",
    )


class EscrowStatus(_Wire):
    """``GET /v1/escrow``."""

    escrowed: bool
    key_id: str | None
    server_key_id: str | None
    updated_at: datetime | None
    pending_recoveries: list[RecoveryOut]
    audit: list[AuditEventOut]


class RecoveryStart(_Wire):
    """``POST /v1/recovery/start``: the new device's ephemeral X25519 public key."""

    device_public_key: X25519PublicKeyBytes


class RecoveryCancel(_Wire):
    """``POST /v1/recovery/cancel``."""

    recovery_id: str = Field(max_length=64)


class RecoveryApprove(_Wire):
    """``POST /v1/recovery/approve``: another device of the account skips the delay."""

    recovery_id: str = Field(max_length=64)


class RecoveryComplete(_Wire):
    """``POST /v1/recovery/complete``."""

    recovery_id: str = Field(max_length=64)


class RecoveryResult(_Wire):
    """The escrowed key re-sealed to the device key.

    ``sealed_key`` is a sealed box with associated data
    ``hushchat-recovery-v1:{account id}:{recovery id}``.
    """

    recovery_id: str
    key_id: str
    sealed_key: Base64Bytes


class Captcha(_Wire):
    """ALTCHA challenge (classic v1 widget format)."""

    algorithm: str
    challenge: str
    maxnumber: int
    salt: str
    signature: str


class SignUp(_Wire):
    """``POST /v1/account/signup``."""

    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    altcha: str = Field(max_length=4096, description="Base64 ALTCHA solution payload.")


class VerifyEmail(_Wire):
    """``POST /v1/account/verify-email``."""

    token: str = Field(max_length=256)


class PasswordResetRequest(_Wire):
    """``POST /v1/account/password-reset``."""

    email: str = Field(max_length=320)
    altcha: str = Field(max_length=4096)


class PasswordResetConfirm(_Wire):
    """``POST /v1/account/password-reset/confirm``."""

    token: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class TokenRequest(_Wire):
    """``POST /v1/account/token``: password sign-in for one device."""

    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]


class RefreshRequest(_Wire):
    """``POST /v1/account/refresh``."""

    refresh_token: str = Field(max_length=256)


class TokenResponse(_Wire):
    """Local-account tokens (OAuth-style)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - OAuth token type name
    expires_in: int
    refresh_token: str


class Accepted(_Wire):
    """Answer that is identical whether or not the e-mail is known."""

    status: Literal["accepted"] = "accepted"
    detail: str


class Health(_Wire):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok"] = "ok"
    version: str
