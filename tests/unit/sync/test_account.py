"""SyncAccount: the versioned JSON the vault stores, and a repr without secrets."""

from __future__ import annotations

import json

import pytest

from app.sync.account import ACCOUNT_FORMAT_VERSION, SyncAccount
from app.sync.dpop import DeviceKey

ACCESS = "eyJ-access-secret"
REFRESH = "refresh-secret-42"


def _account() -> SyncAccount:
    return SyncAccount(
        server_url="https://sync.example.org",
        account_id="acct-1",
        email="alice@example.org",
        sign_in="oidc",
        device_key=DeviceKey.generate(),
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=1_800_000_000.5,
        device_name="Laptop",
        issuer="https://id.example.org",
        token_endpoint="https://id.example.org/token",
        client_id="hushchat-desktop",
        audience="urn:hushchat:sync",
    )


def test_json_round_trip_keeps_everything() -> None:
    account = _account()
    document = json.loads(account.to_json())
    assert document["version"] == ACCOUNT_FORMAT_VERSION == 1
    again = SyncAccount.from_json(account.to_json())
    assert again.device_id == account.device_id
    for name in (
        "server_url",
        "account_id",
        "email",
        "sign_in",
        "access_token",
        "refresh_token",
        "expires_at",
        "device_name",
        "issuer",
        "token_endpoint",
        "client_id",
        "audience",
    ):
        assert getattr(again, name) == getattr(account, name), name


def test_repr_shows_no_secret() -> None:
    account = _account()
    text = repr(account) + str(account)
    assert ACCESS not in text and REFRESH not in text and "PRIVATE" not in text
    assert account.device_id in text and "has_refresh_token=True" in text


def test_a_newer_format_asks_for_an_update() -> None:
    document = json.loads(_account().to_json())
    document["version"] = 2
    with pytest.raises(ValueError, match="newer than this Hushchat reads"):
        SyncAccount.from_json(json.dumps(document))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("access_token"),
        lambda d: d.update(sign_in="password"),
        lambda d: d.update(extra=ACCESS),
        lambda d: d.update(access_token=[ACCESS]),
    ],
)
def test_a_damaged_document_names_fields_not_secrets(change: object) -> None:
    document = json.loads(_account().to_json())
    change(document)  # type: ignore[operator]
    with pytest.raises(ValueError, match="damaged") as raised:
        SyncAccount.from_json(json.dumps(document))
    assert ACCESS not in str(raised.value) and REFRESH not in str(raised.value)


def test_not_json_and_a_bad_key() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        SyncAccount.from_json("{")
    document = json.loads(_account().to_json())
    document["device_key_pem"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="not a device key"):
        SyncAccount.from_json(json.dumps(document))


def test_token_updates_and_expiry() -> None:
    account = _account()
    account.update_tokens("new-access", None, 100)
    assert account.access_token == "new-access" and account.refresh_token == REFRESH
    assert account.expires_within(101) and not account.expires_within(50)
    account.update_tokens("newer", "rotated", None)
    assert account.refresh_token == "rotated" and account.expires_at is None
    assert not account.expires_within(10**9)
