"""Local accounts end to end: sign-up with the ALTCHA solved by the client, the mailed
code, sign-in, sync, token rotation and the password reset, against the real server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sync import dpop
from app.sync.account import SyncAccount
from app.sync.client import SyncClient, SyncRefusedError
from app.sync.errors import SyncAuthError
from app.sync.login import (
    SignInError,
    confirm_password_reset,
    request_password_reset,
    sign_in_local,
    sign_in_with_browser,
    sign_up_local,
    verify_local_email,
)
from app.sync.protocol import RecordIn
from sync_server.app import create_app
from tests.integration.sync_client.support import LiveServer, Mailbox, smtp_server
from tests.integration.sync_server.support import make_settings

pytestmark = pytest.mark.slow

EMAIL = "carol@example.org"
PASSWORD = "correct horse battery"
_CODE = re.compile(r"^([A-Za-z0-9_-]{40,})\r?$", re.MULTILINE)


@pytest.fixture
def mail_and_server(tmp_path: Path) -> Iterator[tuple[Mailbox, LiveServer]]:
    """Local accounts on, cheap Argon2, mail to a capture server; no OIDC issuer."""
    with smtp_server() as (mailbox, port):
        settings = make_settings(
            tmp_path,
            oidc_issuer=None,
            oidc_audience=None,
            oidc_client_id=None,
            local_accounts_enabled=True,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            argon2_time_cost=1,
            argon2_memory_kib=8192,
            argon2_parallelism=1,
            altcha_max_number=20000,
            access_token_ttl_seconds=120,
        )
        with LiveServer(create_app(settings)) as live:
            yield mailbox, live


async def _code(mailbox: Mailbox, subject: str) -> str:
    body = await mailbox.wait_for(EMAIL, subject)
    match = _CODE.search(body)
    assert match, body
    return match.group(1)


async def test_sign_up_verify_sign_in_sync_and_rotate(
    mail_and_server: tuple[Mailbox, LiveServer],
) -> None:
    mailbox, server = mail_and_server
    accepted = await sign_up_local(server.url, EMAIL, PASSWORD)
    assert "verification code" in accepted
    with pytest.raises(SignInError, match="Wrong e-mail or password"):
        await sign_in_local(server.url, EMAIL, PASSWORD)  # not verified yet
    await verify_local_email(server.url, await _code(mailbox, "Confirm"))

    account = await sign_in_local(server.url, EMAIL, PASSWORD, device_name="Desk")
    assert account.sign_in == "local" and account.email == EMAIL and account.account_id
    assert account.access_token.startswith("hcl_") and account.refresh_token
    assert account.token_endpoint is None and account.issuer

    saved: list[SyncAccount] = []
    async with SyncClient(account, on_tokens_changed=saved.append) as client:
        record = RecordIn(id="c1", kind="chat", revision=1, key_id="k", payload=b"x")
        assert (await client.push([record])).applied
        assert [c.id for c in (await client.changes(0)).changes] == ["c1"]
        old_refresh = account.refresh_token
        await client.refresh()
        assert saved == [account] and account.refresh_token != old_refresh
        assert (await client.me()).email == EMAIL
        # An expired access token is refreshed before the request goes out.
        account.expires_at = 0
        await client.devices()
        assert len(saved) == 2

    with pytest.raises(SignInError, match="Wrong e-mail or password"):
        await sign_in_local(server.url, EMAIL, "wrong password!")


async def test_password_reset_signs_out_every_device(
    mail_and_server: tuple[Mailbox, LiveServer],
) -> None:
    mailbox, server = mail_and_server
    await sign_up_local(server.url, EMAIL, PASSWORD)
    await verify_local_email(server.url, await _code(mailbox, "Confirm"))
    account = await sign_in_local(server.url, EMAIL, PASSWORD)

    await request_password_reset(server.url, EMAIL)
    await confirm_password_reset(server.url, await _code(mailbox, "Reset"), "a new passphrase")
    async with SyncClient(account) as client:
        with pytest.raises(SyncAuthError, match="Sign in again"):
            await client.me()
    again = await sign_in_local(server.url, EMAIL, "a new passphrase")
    assert again.account_id == account.account_id


async def test_a_server_without_an_issuer_says_so(
    mail_and_server: tuple[Mailbox, LiveServer],
) -> None:
    _, server = mail_and_server
    with pytest.raises(SignInError, match="e-mail/password accounts"):
        await sign_in_with_browser(server.url, open_browser=lambda url: True)


async def test_a_wrong_clock_is_reported_not_treated_as_signed_out(
    mail_and_server: tuple[Mailbox, LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, server = mail_and_server
    await sign_up_local(server.url, EMAIL, PASSWORD)
    await verify_local_email(server.url, await _code(mailbox, "Confirm"))
    account = await sign_in_local(server.url, EMAIL, PASSWORD)

    class SlowClock:
        @staticmethod
        def time() -> float:
            return time.time() - 3600

    monkeypatch.setattr(dpop, "time", SlowClock)
    async with SyncClient(account) as client:
        with pytest.raises(SyncRefusedError, match="check the device clock"):
            await client.me()
