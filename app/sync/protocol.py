"""The sync API's wire format as the desktop client sees it.

The server's models are in ``sync_server/protocol.py``; the two packages never import
each other (shared DESIGN §1), so the client keeps its own copy of the bodies it sends
and reads, and ``tests/unit/sync/test_protocol.py`` checks that both sides' JSON schemas
agree. Byte strings travel as standard base64 with padding. Unknown fields in answers
are ignored (a newer server may add some); bodies the client sends forbid them.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

__all__ = [
    "PROTOCOL_VERSION",
    "ChangesResponse",
    "DeviceList",
    "DeviceOut",
    "EscrowPut",
    "EscrowStatus",
    "Me",
    "Meta",
    "PushRequest",
    "PushResponse",
    "PushResult",
    "RecordIn",
    "RecordOut",
    "RecoveryAction",
    "RecoveryOut",
    "RecoveryResult",
    "RecoveryStart",
]

PROTOCOL_VERSION = 1
DEVICE_HEADER = "X-Hushchat-Device"
DEVICE_NAME_HEADER = "X-Hushchat-Device-Name"


def _decode_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not valid base64") from exc
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(lambda value: base64.b64encode(value).decode("ascii"), return_type=str),
]


class _Sent(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Received(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RecordIn(_Sent):
    """A record the client pushes."""

    id: str
    kind: str
    revision: int = Field(ge=1)
    parent_revision: int | None = None
    deleted: bool = False
    key_id: str
    payload: Base64Bytes


class RecordOut(_Received):
    """A record as the server stores it."""

    id: str
    kind: str
    revision: int
    parent_revision: int | None
    deleted: bool
    key_id: str
    device_id: str
    size: int
    seq: int
    updated_at: datetime
    payload: Base64Bytes


class PushRequest(_Sent):
    records: list[RecordIn] = Field(min_length=1)
    atomic: bool = False


class PushResult(_Received):
    id: str
    status: Literal["saved", "conflict", "rejected", "aborted"]
    revision: int
    seq: int | None = None
    duplicate: bool = False
    reason: str | None = None
    server_record: RecordOut | None = None


class PushResponse(_Received):
    applied: bool
    results: list[PushResult]
    cursor: int


class RecoveryOut(_Received):
    """A recovery request of the account (``pending``, ``ready``, ``completed``,
    ``cancelled`` or ``expired``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    status: str
    device_id: str
    created_at: datetime
    not_before: datetime
    expires_at: datetime


class ChangesResponse(_Received):
    changes: list[RecordOut]
    cursor: int
    has_more: bool
    # The account's pending/ready recoveries (older servers send none).
    recoveries: list[RecoveryOut] = Field(default_factory=list)


class OidcMeta(_Received):
    issuer: str
    client_id: str
    audience: str
    scopes: list[str]


class EscrowMeta(_Received):
    algorithm: str
    public_key: Base64Bytes
    key_id: str


class LimitsMeta(_Received):
    max_record_bytes: int
    max_request_bytes: int
    max_batch_records: int
    max_page_size: int


class Meta(_Received):
    server_version: str
    protocol_version: int
    oidc: OidcMeta | None
    local_accounts: bool
    escrow: EscrowMeta
    limits: LimitsMeta
    recovery_delay_seconds: int


class Me(_Received):
    id: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    cursor: int
    device_id: str
    created_at: datetime


class DeviceOut(_Received):
    id: str
    name: str | None
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    current: bool


class DeviceList(_Received):
    devices: list[DeviceOut]


class EscrowPut(_Sent):
    """``PUT /v1/escrow``: the Standard sync key sealed to the server's escrow key."""

    tier: Literal["standard"]
    key_id: str
    server_key_id: str
    sealed_key: Base64Bytes


class EscrowStatus(_Received):
    """``GET /v1/escrow`` (the parts the client reads)."""

    escrowed: bool
    key_id: str | None = None
    server_key_id: str | None = None
    updated_at: datetime | None = None


class RecoveryStart(_Sent):
    """``POST /v1/recovery/start``: the new device's ephemeral X25519 public key."""

    device_public_key: Base64Bytes


class RecoveryAction(_Sent):
    """``POST /v1/recovery/approve|cancel|complete``."""

    recovery_id: str


class RecoveryResult(_Received):
    """``POST /v1/recovery/complete``: the escrowed key sealed to the device key."""

    recovery_id: str
    key_id: str
    sealed_key: Base64Bytes
