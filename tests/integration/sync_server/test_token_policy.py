"""Token policy with hand-made tokens: the required JWT ``typ`` and the longest lifetime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_server.app import create_app
from sync_server.settings import Settings
from tests.integration.sync_server.support import FakeIssuer, auth_headers, make_settings, running


async def _status(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.get("/v1/me", headers=auth_headers(token, "GET", "/v1/me", "device-01"))


async def _statuses(
    tmp_path: Path, issuer: FakeIssuer, tokens: list[str], **settings: Any
) -> list[tuple[int, str | None]]:
    app = create_app(make_settings(tmp_path, **settings), http_transport=issuer.transport())
    async with running(app) as api:
        answers = [await _status(api, token) for token in tokens]
    return [
        (a.status_code, a.json().get("detail") if a.status_code != 200 else None) for a in answers
    ]


@pytest.mark.parametrize("required", ["at+jwt", "AT+JWT", "application/at+jwt"])
async def test_required_token_type(tmp_path: Path, issuer: FakeIssuer, required: str) -> None:
    tokens = [
        issuer.mint("alice", typ="at+jwt"),
        issuer.mint("alice", typ="application/AT+JWT"),
        issuer.mint("mallory", typ="JWT"),  # e.g. an ID token or another JWT of the issuer
        issuer.mint("mallory"),  # no typ at all
    ]
    answers = await _statuses(tmp_path, issuer, tokens, oidc_require_token_type=required)
    refused = (401, "token type not accepted")
    assert answers == [(200, None), (200, None), refused, refused]


async def test_any_token_type_by_default(tmp_path: Path, issuer: FakeIssuer) -> None:
    tokens = [issuer.mint("alice", typ="JWT"), issuer.mint("alice"), issuer.mint("a", typ="x")]
    assert await _statuses(tmp_path, issuer, tokens) == [(200, None)] * 3


def test_token_type_setting_is_normalised(tmp_path: Path) -> None:
    assert (
        make_settings(
            tmp_path, oidc_require_token_type=" Application/AT+JWT "
        ).oidc_require_token_type
        == "at+jwt"
    )
    assert make_settings(tmp_path, oidc_require_token_type="").oidc_require_token_type is None
    assert Settings.model_fields["oidc_require_token_type"].default is None


async def test_longest_accepted_lifetime(tmp_path: Path, issuer: FakeIssuer) -> None:
    now = int(time.time())
    tokens = [
        issuer.mint("alice", lifetime=3600),
        issuer.mint("mallory", lifetime=3601),
        # Issued long ago with a far expiry: exp - iat counts, not what is left.
        issuer.mint("mallory", iat=now - 7000, exp=now + 300),
    ]
    answers = await _statuses(tmp_path, issuer, tokens, oidc_max_token_lifetime_seconds=3600)
    too_long = (401, "token lifetime longer than this server accepts")
    assert answers == [(200, None), too_long, too_long]


async def test_default_lifetime_limit_is_a_day_and_zero_turns_it_off(
    tmp_path: Path, issuer: FakeIssuer
) -> None:
    day, year = 86400, 365 * 86400
    tokens = [issuer.mint("alice", lifetime=day), issuer.mint("bob", lifetime=day + 1)]
    first, second = await _statuses(tmp_path / "default", issuer, tokens)
    assert first == (200, None) and second[0] == 401
    unlimited = await _statuses(
        tmp_path / "off",
        issuer,
        [issuer.mint("carol", lifetime=year)],
        oidc_max_token_lifetime_seconds=0,
    )
    assert unlimited == [(200, None)]
