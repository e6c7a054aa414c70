"""Fixtures of the sync-server integration tests (in-process app, SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.sync.dpop import DeviceKey
from sync_server.app import create_app
from tests.integration.sync_server.support import (
    ApiUser,
    FakeIssuer,
    make_settings,
    running,
    skip_or_fail,
)

POSTGRES_ENV = "HUSHCHAT_TEST_POSTGRES_URL"


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in tmp data dir) or a freshly emptied PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        skip_or_fail(f"{POSTGRES_ENV} is not set (run .ci/setup-server-peers)")
    assert url is not None
    await _reset_postgres(url)
    return url


@pytest.fixture
def issuer() -> FakeIssuer:
    """A fake issuer with one published signing key."""
    fake = FakeIssuer()
    fake.add_key("key-1")
    return fake


@pytest.fixture
async def api(
    tmp_path: Path, database_url: str | None, issuer: FakeIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    """In-process server on the fake issuer."""
    settings = make_settings(tmp_path, database_url)
    app = create_app(settings, http_transport=issuer.transport())
    async with running(app) as client:
        yield client


@pytest.fixture
def user(api: httpx.AsyncClient, issuer: FakeIssuer) -> Callable[..., ApiUser]:
    """Factory: ``user("alice")`` → authenticated client for subject alice."""

    def make(subject: str, device: DeviceKey | str | None = None, **claims: Any) -> ApiUser:
        return ApiUser(api, issuer.mint(subject, **claims), device or f"{subject}-device-1")

    return make
