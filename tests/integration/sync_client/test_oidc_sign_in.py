"""Signing in against the real oidc-provider peer and the real sync server, then syncing.

The server runs under uvicorn on loopback with the peer as its issuer; the client signs in
with the authorization code + PKCE and a loopback redirect (the "browser" follows the
peer's redirects to the client's listener) and with the device authorization grant, then
uses the sync API with DPoP proofs on every request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sync.account import SyncAccount
from app.sync.client import SyncClient
from app.sync.dpop import DeviceKey
from app.sync.errors import SyncAuthError
from app.sync.login import (
    SignInError,
    revoke_refresh_token,
    sign_in_with_browser,
    sign_in_with_device_code,
)
from app.sync.protocol import RecordIn
from sync_server.app import create_app
from tests.integration.sync_client.support import LiveServer, ScriptedBrowser
from tests.integration.sync_server.support import make_settings, skip_or_fail
from tests.peers.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider, unavailable_reason

pytestmark = [pytest.mark.oidc, pytest.mark.slow]

SCOPES = "openid email offline_access sync"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One oidc-provider process for the module."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as peer:
        yield peer


@pytest.fixture
def server(provider: OidcProvider, tmp_path: Path) -> Iterator[LiveServer]:
    """The sync server on loopback, the peer as its issuer."""
    settings = make_settings(
        tmp_path,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_scopes=SCOPES,
    )
    with LiveServer(create_app(settings)) as live:
        yield live


def _record(record_id: str, payload: bytes = b"ciphertext") -> RecordIn:
    return RecordIn(id=record_id, kind="message", revision=1, key_id="k1", payload=payload)


def _assert_no_secret_logged(caplog: pytest.LogCaptureFixture, account: SyncAccount) -> None:
    secrets = [account.access_token, account.refresh_token, account.device_key.to_pem().decode()]
    for record in caplog.records:
        text = record.getMessage() + str(record.args)
        for secret in secrets:
            assert secret and secret not in text, record.name


async def test_browser_sign_in_then_sync(
    server: LiveServer, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser = ScriptedBrowser()
    output = io.StringIO()
    key = DeviceKey.generate()
    account = await sign_in_with_browser(
        server.url,
        device_key=key,
        device_name="Laptop (test)",
        open_browser=browser.open,
        output=output,
        wait_seconds=30,
        login_hint="alice",
    )
    # The browser went to the issuer, then to the client's loopback listener.
    assert browser.visited[0].startswith(provider.issuer + "/auth?")
    assert re.match(r"http://127\.0\.0\.1:\d+/callback\?", browser.visited[-1])
    assert browser.callback_status == 200 and "close this tab" in browser.callback_page
    assert "Continue in the browser" in output.getvalue()

    assert account.sign_in == "oidc" and account.device_key is key
    assert account.email == "alice@example.org" and account.account_id
    assert account.issuer == provider.issuer and account.audience == AUDIENCE
    assert account.token_endpoint and account.token_endpoint.startswith(provider.issuer)
    assert account.refresh_token, "offline_access with prompt=consent gives a refresh token"
    assert account.expires_at is not None

    saved: list[str] = []
    async with SyncClient(account, on_tokens_changed=lambda a: saved.append(a.to_json())) as client:
        me = await client.me()
        assert me.device_id == key.device_id and me.email == "alice@example.org"
        pushed = await client.push([_record("m1"), _record("m2", b"two")])
        assert pushed.applied and [r.status for r in pushed.results] == ["saved", "saved"]
        page = await client.changes(0)
        assert [c.id for c in page.changes] == ["m1", "m2"] and page.cursor == pushed.cursor
        assert page.changes[1].payload == b"two" and page.changes[0].device_id == key.device_id
        devices = await client.devices()
        assert [(d.id, d.name, d.current) for d in devices] == [
            (key.device_id, "Laptop (test)", True)
        ]

        # The refresh token works at the peer and the new access token at the server.
        old_access = account.access_token
        await client.refresh()
        assert account.access_token != old_access and saved
        restored = SyncAccount.from_json(saved[-1])
        assert restored.access_token == account.access_token
        assert (await client.me()).id == me.id
    _assert_no_secret_logged(caplog, account)


async def test_signing_out_revokes_the_refresh_token_at_the_provider(
    server: LiveServer,
) -> None:
    account = await sign_in_with_browser(
        server.url,
        open_browser=ScriptedBrowser().open,
        output=io.StringIO(),
        login_hint="alice",
        wait_seconds=30,
    )
    copy = SyncAccount.from_json(account.to_json())  # e.g. in a backup of the vault
    async with SyncClient(account) as client:
        await client.refresh()  # the refresh token works…
    assert await revoke_refresh_token(account)
    async with SyncClient(account) as client:
        with pytest.raises(SyncAuthError, match="no longer accepts this sign-in"):
            await client.refresh()  # …and no longer after the revocation
    assert copy.refresh_token != account.refresh_token  # rotated by the refresh above
    local = SyncAccount.from_json(account.to_json())
    local.sign_in = "local"
    assert not await revoke_refresh_token(local)  # the server's own tokens: nothing here


async def test_long_poll_returns_when_another_device_pushes(server: LiveServer) -> None:
    first = await sign_in_with_browser(
        server.url, open_browser=ScriptedBrowser().open, output=io.StringIO(), login_hint="bob"
    )
    second = await sign_in_with_browser(
        server.url, open_browser=ScriptedBrowser().open, output=io.StringIO(), login_hint="bob"
    )
    assert first.account_id == second.account_id and first.device_id != second.device_id
    async with SyncClient(first) as one, SyncClient(second) as two:
        cursor = (await one.me()).cursor
        waiting = asyncio.create_task(one.changes(cursor, wait=20))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        started = asyncio.get_running_loop().time()
        await two.push([_record("from-two")])
        page = await asyncio.wait_for(waiting, timeout=10)
        assert [c.id for c in page.changes] == ["from-two"]
        assert asyncio.get_running_loop().time() - started < 5

        # Revoking the second device: its next call fails as signed out.
        await one.revoke(second.device_id)
        with pytest.raises(SyncAuthError):
            await two.me()


async def test_no_browser_prints_the_url_and_still_waits(server: LiveServer) -> None:
    output = io.StringIO()
    opened: list[str] = []

    async def follow_printed_url() -> None:
        for _ in range(200):
            match = re.search(r"^  (http\S+)$", output.getvalue(), re.MULTILINE)
            if match:
                await asyncio.to_thread(ScriptedBrowser().open, match.group(1))
                return
            await asyncio.sleep(0.05)
        raise AssertionError("no URL printed")

    follower = asyncio.create_task(follow_printed_url())
    account = await sign_in_with_browser(
        server.url,
        open_browser=opened.append,
        no_browser=True,
        output=output,
        wait_seconds=30,
        login_hint="alice",
    )
    await follower
    assert opened == [] and account.email == "alice@example.org"


async def test_device_code_sign_in(server: LiveServer, provider: OidcProvider) -> None:
    output = io.StringIO()

    async def approve_on_another_device() -> None:
        for _ in range(200):
            match = re.search(r"enter the code\n\n  (\S+)\n", output.getvalue())
            if match:
                page = await asyncio.to_thread(
                    ScriptedBrowser().enter_user_code, provider.issuer, match.group(1)
                )
                assert "Signed in" in page
                return
            await asyncio.sleep(0.05)
        raise AssertionError("no user code printed")

    approver = asyncio.create_task(approve_on_another_device())
    account = await asyncio.wait_for(
        sign_in_with_device_code(server.url, output=output, login_hint="bob"), timeout=60
    )
    await approver
    assert account.email == "bob@example.org" and account.sign_in == "oidc"
    assert f"{provider.issuer}/device" in output.getvalue()
    async with SyncClient(account) as client:
        pushed = await client.push([_record("d1")])
        assert pushed.applied


async def test_an_unverified_email_is_refused_by_the_server(server: LiveServer) -> None:
    with pytest.raises(SyncAuthError, match="E-mail not verified"):
        await sign_in_with_browser(
            server.url,
            open_browser=ScriptedBrowser().open,
            output=io.StringIO(),
            login_hint="mallory",
        )


async def test_a_refused_login_is_a_sign_in_error(server: LiveServer) -> None:
    # The peer's interaction answers 400 for an unknown user: the browser never reaches
    # the callback, so the wait ends with a clear timeout.
    with pytest.raises(SignInError, match="No sign-in arrived"):
        await sign_in_with_browser(
            server.url,
            open_browser=ScriptedBrowser().open,
            output=io.StringIO(),
            wait_seconds=1,
            login_hint="nobody",
        )
