"""The real peers of the sync client tests: the oidc-provider issuer, a sync server that
trusts it on loopback, sign-in as the issuer's user ``alice`` (the test plays the
browser), and one pass of the operator's escrow command.

Test modules import the fixtures they use (``provider``, ``server_dir``, ``server``) and
list them in ``__all__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.session import Session
from app.sync.account import SyncAccount
from app.sync.dpop import DeviceKey
from app.sync.login import sign_in_with_browser
from sync_server.app import create_app
from sync_server.db import Database
from sync_server.escrow_worker import load_escrow_keys, process_once
from sync_server.settings import Settings
from tests.integration.sync_client.support import LiveServer, ScriptedBrowser
from tests.integration.sync_server.support import make_settings, skip_or_fail
from tests.peers.oidc_provider import AUDIENCE, CLIENT_ID, OidcProvider, unavailable_reason

SCOPES = "openid email offline_access sync"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The oidc-provider peer (one per test module)."""
    reason = unavailable_reason()
    if reason:
        skip_or_fail(f"oidc-provider peer unavailable: {reason}")
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as peer:
        yield peer


def oidc_settings(provider: OidcProvider, directory: Path, **overrides: Any) -> Settings:
    """Settings of a sync server in ``directory`` that trusts ``provider``."""
    directory.mkdir(parents=True, exist_ok=True)
    return make_settings(
        directory,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_scopes=SCOPES,
        **overrides,
    )


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """Where the server of a test keeps its database."""
    return tmp_path / "server"


@pytest.fixture
def server(provider: OidcProvider, server_dir: Path) -> Iterator[LiveServer]:
    """A sync server on loopback with its own SQLite database in ``server_dir``."""
    with LiveServer(create_app(oidc_settings(provider, server_dir))) as live:
        yield live


def serving(settings: Settings) -> Settings:
    """What ``serve`` gets: the escrow public key only (the private key stays with the
    escrow command)."""
    assert settings.escrow_public_key is not None
    return settings.model_copy(update={"escrow_private_key": None, "escrow_kek": None})


async def escrow_step(settings: Settings) -> list[str]:
    """One pass of the operator's escrow command (``escrow process --once``): the ids of
    the recoveries it sealed an answer for."""
    db = Database(settings)
    try:
        return (await process_once(db, load_escrow_keys(settings))).sealed
    finally:
        await db.close()


async def sign_in_alice(server: LiveServer, name: str, key: DeviceKey | None = None) -> SyncAccount:
    """Sign in as ``alice`` with the browser flow (the test opens the address)."""
    return await sign_in_with_browser(
        server.url,
        device_name=name,
        open_browser=ScriptedBrowser().open,
        wait_seconds=30,
        login_hint="alice",
        device_key=key,
    )


async def close_sessions(sessions: Iterable[Session]) -> None:
    """Stop each session's sync and close it (off the loop: closing checkpoints)."""
    for session in sessions:
        if session.is_unlocked:
            await session.sync.close()
        await asyncio.get_running_loop().run_in_executor(None, session.close)
