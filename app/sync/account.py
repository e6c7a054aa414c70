"""A signed-in sync account: which server, who, this device's key, and the tokens.

:class:`SyncAccount` is what sign-in (``app/sync/login.py``) produces and what
:class:`~app.sync.client.SyncClient` uses and updates (refreshed and rotated tokens). It
holds secrets — the device's private key and the tokens — so it is stored only inside the
encrypted vault; this module never writes a file. The caller persists it with
:meth:`SyncAccount.to_json` / :meth:`SyncAccount.from_json` (a versioned JSON document) and
is told about token changes through the client's ``on_tokens_changed`` callback.

``repr()`` shows no secret: neither tokens nor the key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from app.sync.dpop import DeviceKey

__all__ = ["ACCOUNT_FORMAT_VERSION", "SignInKind", "SyncAccount"]

ACCOUNT_FORMAT_VERSION = 1

SignInKind = Literal["oidc", "local"]


class _StoredAccount(BaseModel):
    """The JSON document of :meth:`SyncAccount.to_json` (version 1)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    server_url: str
    account_id: str
    email: str | None
    sign_in: SignInKind
    device_key_pem: str
    device_name: str | None
    access_token: str
    refresh_token: str | None
    expires_at: float | None
    issuer: str | None
    token_endpoint: str | None
    client_id: str | None
    audience: str | None


@dataclass(eq=False, repr=False)
class SyncAccount:
    """One device's sign-in to one sync server.

    * ``server_url``: the sync server as the user configured it (no trailing slash).
    * ``account_id``, ``email``: from ``GET /v1/me`` at sign-in.
    * ``sign_in``: ``"oidc"`` (an identity provider) or ``"local"`` (the server's own
      e-mail/password accounts).
    * ``device_key``: the device's DPoP key; its thumbprint is the device id. Secret.
    * ``access_token``, ``refresh_token`` (None when the issuer gave none), ``expires_at``
      (Unix seconds; None when unknown). Secret.
    * How to refresh: ``token_endpoint`` and ``client_id`` of the OIDC issuer (``issuer``)
      and the ``audience`` (resource) the access token is for; local accounts refresh at
      the sync server (``token_endpoint`` is None).
    """

    server_url: str
    account_id: str
    email: str | None
    sign_in: SignInKind
    device_key: DeviceKey
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    device_name: str | None = None
    issuer: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    audience: str | None = None

    @property
    def device_id(self) -> str:
        """The device id: the device key's thumbprint."""
        return self.device_key.device_id

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        """True when the access token expires in less than ``seconds`` (or has)."""
        if self.expires_at is None:
            return False
        return self.expires_at - seconds <= (time.time() if now is None else now)

    def update_tokens(
        self, access_token: str, refresh_token: str | None, expires_in: float | None
    ) -> None:
        """Take a token endpoint's answer; a missing refresh token keeps the old one."""
        self.access_token = access_token
        if refresh_token:
            self.refresh_token = refresh_token
        self.expires_at = None if expires_in is None else time.time() + float(expires_in)

    def to_json(self) -> str:
        """The account as a versioned JSON document, secrets included (vault only)."""
        stored = _StoredAccount(
            version=ACCOUNT_FORMAT_VERSION,
            server_url=self.server_url,
            account_id=self.account_id,
            email=self.email,
            sign_in=self.sign_in,
            device_key_pem=self.device_key.to_pem().decode("ascii"),
            device_name=self.device_name,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            expires_at=self.expires_at,
            issuer=self.issuer,
            token_endpoint=self.token_endpoint,
            client_id=self.client_id,
            audience=self.audience,
        )
        return stored.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> SyncAccount:
        """Load :meth:`to_json`'s document; ValueError (naming no secret) when it is not one."""
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise ValueError("the saved sync account is not JSON") from error
        version = raw.get("version") if isinstance(raw, dict) else None
        if isinstance(version, int) and version > ACCOUNT_FORMAT_VERSION:
            raise ValueError(
                f"the saved sync account has format {version}, newer than this "
                f"Hushchat reads ({ACCOUNT_FORMAT_VERSION}): update Hushchat"
            )
        try:
            stored = _StoredAccount.model_validate(raw)
        except ValidationError as error:
            # The pydantic message would quote the input, tokens included: name fields only.
            fields = sorted({".".join(map(str, e["loc"])) for e in error.errors()})
            raise ValueError(
                f"the saved sync account is damaged (fields: {', '.join(fields)})"
            ) from None
        return cls(
            server_url=stored.server_url,
            account_id=stored.account_id,
            email=stored.email,
            sign_in=stored.sign_in,
            device_key=DeviceKey.from_pem(stored.device_key_pem.encode("ascii")),
            access_token=stored.access_token,
            refresh_token=stored.refresh_token,
            expires_at=stored.expires_at,
            device_name=stored.device_name,
            issuer=stored.issuer,
            token_endpoint=stored.token_endpoint,
            client_id=stored.client_id,
            audience=stored.audience,
        )

    def __repr__(self) -> str:
        return (
            f"SyncAccount(server_url={self.server_url!r}, account_id={self.account_id!r}, "
            f"email={self.email!r}, sign_in={self.sign_in!r}, device_id={self.device_id!r}, "
            f"device_name={self.device_name!r}, expires_at={self.expires_at!r}, "
            f"has_refresh_token={self.refresh_token is not None})"
        )
