"""SyncClient against httpx.MockTransport: headers and proofs, refresh, error mapping."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt as pyjwt
import pytest

from app.sync.account import SyncAccount
from app.sync.client import (
    DEFAULT_RETRY_AFTER,
    InsecureServerError,
    SyncClient,
    SyncRefusedError,
    check_server_url,
    device_name_header,
    parse_retry_after,
)
from app.sync.dpop import DeviceKey, access_token_hash
from app.sync.errors import (
    SyncAuthError,
    SyncOfflineError,
    SyncProtocolError,
    SyncRetryLaterError,
)
from app.sync.protocol import RecordIn

SERVER = "https://sync.example.org/base"
ACCESS = "access-token-0123456789"
REFRESH = "refresh-token-9876543210"
NOW = "2026-11-30T08:00:00Z"

Handler = Callable[[httpx.Request], httpx.Response]


def _me(device_id: str) -> dict[str, Any]:
    return {
        "id": "acct-1",
        "issuer": "https://id.example.org",
        "subject": "alice",
        "email": "alice@example.org",
        "email_verified": True,
        "cursor": 3,
        "device_id": device_id,
        "created_at": NOW,
    }


def _problem(status: int, slug: str, title: str, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "type": f"https://hushchat.example/problems/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
        },
        headers={"Content-Type": "application/problem+json", **headers},
    )


def _account(**overrides: Any) -> SyncAccount:
    values: dict[str, Any] = {
        "server_url": SERVER,
        "account_id": "acct-1",
        "email": "alice@example.org",
        "sign_in": "local",
        "device_key": DeviceKey.generate(),
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": time.time() + 3600,
        "device_name": "Alice's läptop",
    }
    values.update(overrides)
    return SyncAccount(**values)


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Handler | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def client(self, account: SyncAccount, **kw: Any) -> SyncClient:
        return SyncClient(account, transport=httpx.MockTransport(self), **kw)


def _claims(request: httpx.Request) -> dict[str, Any]:
    proof = request.headers["DPoP"]
    header = pyjwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    key = pyjwt.PyJWK(header["jwk"]).key
    claims: dict[str, Any] = pyjwt.decode(proof, key, algorithms=["ES256"])
    return claims


async def test_every_request_carries_token_device_and_a_fresh_proof() -> None:
    account = _account()
    recorder = Recorder(
        lambda request: (
            httpx.Response(200, json=_me(account.device_id))
            if request.url.path.endswith("/v1/me")
            else httpx.Response(200, json={"changes": [], "cursor": 5, "has_more": False})
        )
    )
    async with recorder.client(account) as client:
        assert (await client.me()).cursor == 3
        await client.changes(3, limit=50)
        await client.changes(5)
    jtis = set()
    for request in recorder.requests:
        assert request.headers["Authorization"] == f"Bearer {ACCESS}"
        assert request.headers["X-Hushchat-Device"] == account.device_id
        assert request.headers["X-Hushchat-Device-Name"] == "Alice's laptop"
        claims = _claims(request)
        assert claims["htm"] == "GET" and claims["ath"] == access_token_hash(ACCESS)
        assert claims["htu"] == f"{SERVER}{request.url.path.removeprefix('/base')}"
        assert "?" not in claims["htu"]
        jtis.add(claims["jti"])
    assert len(jtis) == 3
    assert recorder.requests[1].url.params["limit"] == "50"
    assert "wait" not in recorder.requests[1].url.params


async def test_push_sends_the_records_and_reads_the_results() -> None:
    account = _account()
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "applied": True,
                "cursor": 9,
                "results": [{"id": "r1", "status": "saved", "revision": 1, "seq": 9}],
            },
        )
    )
    record = RecordIn(id="r1", kind="message", revision=1, key_id="k", payload=b"\x00ct")
    async with recorder.client(account) as client:
        answer = await client.push([record], atomic=True)
        with pytest.raises(ValueError, match="at least one"):
            await client.push([])
    assert answer.cursor == 9 and answer.results[0].status == "saved"
    request = recorder.requests[0]
    assert request.method == "POST" and request.url.path == "/base/v1/sync/push"
    body = json.loads(request.content)
    assert body == {
        "records": [
            {
                "id": "r1",
                "kind": "message",
                "revision": 1,
                "parent_revision": None,
                "deleted": False,
                "key_id": "k",
                "payload": "AGN0",
            }
        ],
        "atomic": True,
    }
    assert _claims(request)["htm"] == "POST"


async def test_long_poll_sends_wait_and_extends_the_read_timeout() -> None:
    recorder = Recorder(httpx.Response(200, json={"changes": [], "cursor": 1, "has_more": False}))
    async with recorder.client(_account(), timeout=10) as client:
        await client.changes(1, wait=2.5)
        await client.changes(1, wait=99)
    first, second = recorder.requests
    assert first.url.params["wait"] == "3" and second.url.params["wait"] == "30"
    assert first.extensions["timeout"]["read"] == 13
    assert second.extensions["timeout"]["read"] == 40


async def test_a_401_refreshes_once_and_retries_with_a_new_proof() -> None:
    account = _account()
    saved: list[str] = []

    async def save(changed: SyncAccount) -> None:
        saved.append(changed.access_token)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v1/account/refresh"):
            assert json.loads(request.content) == {"refresh_token": REFRESH}
            return httpx.Response(
                200, json={"access_token": "hcl_new", "refresh_token": "hcl_r2", "expires_in": 900}
            )
        if request.headers["Authorization"] == f"Bearer {ACCESS}":
            return _problem(401, "unauthorized", "Unauthorized", "Token expired.")
        return httpx.Response(200, json=_me(account.device_id))

    recorder = Recorder(answer)
    async with recorder.client(account, on_tokens_changed=save) as client:
        await client.me()
    paths = [r.url.path for r in recorder.requests]
    assert paths == ["/base/v1/me", "/base/v1/account/refresh", "/base/v1/me"]
    retry = recorder.requests[2]
    assert retry.headers["Authorization"] == "Bearer hcl_new"
    assert _claims(retry)["ath"] == access_token_hash("hcl_new")
    assert _claims(retry)["jti"] != _claims(recorder.requests[0])["jti"]
    assert account.refresh_token == "hcl_r2" and saved == ["hcl_new"]
    assert account.expires_at is not None and account.expires_at > time.time() + 800


async def test_a_second_401_is_an_auth_error_and_refresh_happens_once() -> None:
    account = _account()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/refresh"):
            return httpx.Response(200, json={"access_token": "hcl_new", "expires_in": 900})
        return _problem(401, "unauthorized", "Unauthorized", "Account no longer exists.")

    recorder = Recorder(answer)
    async with recorder.client(account) as client:
        with pytest.raises(SyncAuthError, match="Account no longer exists"):
            await client.me()
    assert [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests] == ["me", "refresh", "me"]
    assert account.refresh_token == REFRESH  # not rotated: the old one is kept


async def test_a_401_without_a_refresh_token_is_an_auth_error_at_once() -> None:
    recorder = Recorder(_problem(401, "unauthorized", "Unauthorized", "Token expired."))
    async with recorder.client(_account(refresh_token=None)) as client:
        with pytest.raises(SyncAuthError, match="Sign in again"):
            await client.devices()
    assert len(recorder.requests) == 1


async def test_a_refused_refresh_token_is_an_auth_error() -> None:
    recorder = Recorder(
        lambda r: _problem(401, "unauthorized", "Unauthorized", "Invalid or expired refresh token.")
    )
    async with recorder.client(_account(expires_at=time.time() + 5)) as client:
        with pytest.raises(SyncAuthError, match="Sign in again"):
            await client.me()
    assert recorder.requests[0].url.path.endswith("/v1/account/refresh")


async def test_tokens_are_refreshed_shortly_before_they_expire() -> None:
    account = _account(expires_at=time.time() + 30)
    recorder = Recorder(
        lambda request: (
            httpx.Response(200, json={"access_token": "hcl_fresh", "expires_in": 900})
            if request.url.path.endswith("/refresh")
            else httpx.Response(200, json=_me(account.device_id))
        )
    )
    async with recorder.client(account, refresh_margin=60) as client:
        await client.me()
        await client.me()
    paths = [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests]
    assert paths == ["refresh", "me", "me"]
    assert recorder.requests[1].headers["Authorization"] == "Bearer hcl_fresh"


async def test_concurrent_401s_share_one_refresh() -> None:
    account = _account()
    refreshes = 0

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        nonlocal refreshes
        if request.url.path.endswith("/refresh"):
            refreshes += 1
            await asyncio.sleep(0.05)
            return httpx.Response(200, json={"access_token": "hcl_new", "refresh_token": "r2"})
        if request.headers["Authorization"] == f"Bearer {ACCESS}":
            return httpx.Response(401)
        return httpx.Response(200, json=_me(account.device_id))

    async with SyncClient(account, transport=httpx.MockTransport(slow_answer)) as client:
        await asyncio.gather(*(client.me() for _ in range(5)))
    assert refreshes == 1


async def test_oidc_refresh_goes_to_the_issuers_token_endpoint() -> None:
    account = _account(
        sign_in="oidc",
        issuer="https://id.example.org",
        token_endpoint="https://id.example.org/token",
        client_id="hushchat-desktop",
        audience="urn:hushchat:sync",
        expires_at=time.time() - 1,
    )
    changed: list[SyncAccount] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "id.example.org":
            return httpx.Response(
                200,
                json={
                    "access_token": "jwt-2",
                    "refresh_token": "rt-2",
                    "expires_in": 300,
                    "token_type": "Bearer",
                },
            )
        return httpx.Response(200, json=_me(account.device_id))

    recorder = Recorder(answer)
    async with recorder.client(account, on_tokens_changed=changed.append) as client:
        await client.me()
    token_request = recorder.requests[0]
    assert str(token_request.url) == "https://id.example.org/token"
    form = parse_qs(token_request.content.decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [REFRESH]
    assert form["client_id"] == ["hushchat-desktop"]
    assert form["resource"] == ["urn:hushchat:sync"]
    assert "DPoP" not in token_request.headers  # the issuer is not asked for DPoP tokens
    assert account.access_token == "jwt-2" and account.refresh_token == "rt-2"
    assert changed == [account]
    assert recorder.requests[1].headers["Authorization"] == "Bearer jwt-2"


async def test_an_oidc_refresh_the_issuer_refuses_is_an_auth_error() -> None:
    account = _account(
        sign_in="oidc",
        token_endpoint="https://id.example.org/token",
        client_id="c",
        expires_at=time.time() - 1,
    )
    recorder = Recorder(httpx.Response(400, json={"error": "invalid_grant"}))
    async with recorder.client(account) as client:
        with pytest.raises(SyncAuthError, match="invalid_grant"):
            await client.me()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectError("refused"), SyncOfflineError),
        (httpx.ReadError("reset by peer"), SyncOfflineError),
        (httpx.ReadTimeout("slow"), SyncOfflineError),
        (httpx.ConnectTimeout("slow"), SyncOfflineError),
        (httpx.RemoteProtocolError("server disconnected"), SyncOfflineError),
        (httpx.UnsupportedProtocol("gopher"), SyncProtocolError),
    ],
)
async def test_network_failures(failure: Exception, expected: type[Exception]) -> None:
    recorder = Recorder(failure)
    async with recorder.client(_account()) as client:
        with pytest.raises(expected) as raised:
            await client.me()
    assert ACCESS not in str(raised.value)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            _problem(403, "device-revoked", "Device revoked", "This device was revoked."),
            SyncAuthError,
        ),
        (_problem(403, "email-not-verified", "E-mail not verified", "Verify it."), SyncAuthError),
        (_problem(500, "internal", "Internal error", "Sorry."), SyncProtocolError),
        (httpx.Response(502, text="<html>bad gateway</html>"), SyncOfflineError),
        (httpx.Response(504), SyncOfflineError),
        (httpx.Response(302, headers={"Location": "https://elsewhere/"}), SyncProtocolError),
        (httpx.Response(200, text="not json"), SyncProtocolError),
        (httpx.Response(200, json={"id": 5}), SyncProtocolError),
        (_problem(413, "payload-too-large", "Too large", "Over the limit."), SyncRefusedError),
    ],
)
async def test_answers_are_mapped_to_the_error_tree(
    response: httpx.Response, expected: type[Exception]
) -> None:
    recorder = Recorder(response)
    async with recorder.client(_account()) as client:
        with pytest.raises(expected):
            await client.me()
    assert len(recorder.requests) == 1


async def test_revoking_an_unknown_device_is_refused_with_its_status() -> None:
    recorder = Recorder(_problem(404, "not-found", "Not found", "No such device."))
    async with recorder.client(_account()) as client:
        with pytest.raises(SyncRefusedError, match="No such device") as raised:
            await client.revoke("x" * 43)
    assert raised.value.status == 404 and raised.value.slug == "not-found"
    assert recorder.requests[0].method == "DELETE"
    assert _claims(recorder.requests[0])["htm"] == "DELETE"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "7"}, 7.0), ({}, DEFAULT_RETRY_AFTER), ({"Retry-After": "soon"}, 5.0)],
)
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_later_carries_retry_after(
    status: int, headers: dict[str, str], seconds: float
) -> None:
    recorder = Recorder(
        _problem(status, "rate-limited", "Too many requests", "Slow down.", **headers)
    )
    async with recorder.client(_account()) as client:
        with pytest.raises(SyncRetryLaterError) as raised:
            await client.changes(0)
    assert raised.value.retry_after == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 90
    assert (
        parse_retry_after(
            format_datetime(now - timedelta(seconds=5), usegmt=True), now=now.timestamp()
        )
        == 0
    )
    assert parse_retry_after("999999") == 3600
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("nan") == DEFAULT_RETRY_AFTER


async def test_no_token_in_logs_or_error_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = _account()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/refresh"):
            return _problem(401, "unauthorized", "Unauthorized", f"bad token {REFRESH}")
        return _problem(401, "unauthorized", "Unauthorized", f"the token {ACCESS} expired")

    recorder = Recorder(answer)
    async with recorder.client(account) as client:
        with pytest.raises(SyncAuthError) as raised:
            await client.me()
    message = str(raised.value)
    assert ACCESS not in message and REFRESH not in message and "[redacted]" in message
    for record in caplog.records:
        text = record.getMessage()
        assert ACCESS not in text and REFRESH not in text


async def test_a_failing_save_callback_is_logged_and_syncing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = _account(expires_at=0)

    def broken(_: SyncAccount) -> None:
        raise OSError("vault is busy")

    recorder = Recorder(
        lambda request: (
            httpx.Response(200, json={"access_token": "hcl_x", "expires_in": 60})
            if request.url.path.endswith("/refresh")
            else httpx.Response(200, json=_me(account.device_id))
        )
    )
    async with recorder.client(account, on_tokens_changed=broken) as client:
        await client.me()
    assert account.access_token == "hcl_x"
    assert any("saving the refreshed sign-in failed" in r.getMessage() for r in caplog.records)


def test_the_client_ignores_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = SyncClient(_account())
    assert client._http.trust_env is False
    with_proxy = SyncClient(_account(), proxy="http://chosen.proxy:8080")
    assert with_proxy._http.trust_env is False


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://sync.example.org/", "https://sync.example.org"),
        ("HTTPS://Sync.Example.org:8443/hush/", "https://sync.example.org:8443/hush"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.1.2.3", "http://127.1.2.3"),
        ("http://localhost:9/x", "http://localhost:9/x"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:127.0.0.1]"),
    ],
)
def test_server_urls_accepted(url: str, normalised: str) -> None:
    assert check_server_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://sync.example.org", "must use https"),
        ("http://192.168.1.5:8080", "must use https"),
        ("http://[::ffff:10.0.0.1]/", "must use https"),
        ("ftp://sync.example.org", "not a web address"),
        ("sync.example.org", "not a web address"),
        ("https://user:pw@sync.example.org", "user name"),
        ("https://sync.example.org/?x=1", "query"),
        ("https://sync.example.org:99999", "not a valid URL"),
    ],
)
def test_server_urls_refused(url: str, reason: str) -> None:
    with pytest.raises(InsecureServerError, match=reason):
        check_server_url(url)
    with pytest.raises(InsecureServerError):
        SyncClient(_account(server_url=url))


def test_device_names_become_printable_ascii() -> None:
    assert device_name_header("Zo\u00eb\u2019s Mac \u2014 \U0001f34e") == "Zoes Mac"
    assert device_name_header("x" * 150) == "x" * 100
    assert device_name_header("🍎") is None
    assert device_name_header(None) is None


@pytest.mark.parametrize("module", ["app.sync.client", "app.sync.login", "app.sync.account"])
def test_the_public_surface_exists(module: str) -> None:
    loaded = importlib.import_module(module)
    assert all(hasattr(loaded, name) for name in loaded.__all__)


async def test_a_refused_proof_is_not_a_sign_out_and_is_not_refreshed() -> None:
    recorder = Recorder(
        _problem(
            401, "invalid-dpop-proof", "Unauthorized", "DPoP proof too old; check the device clock."
        )
    )
    async with recorder.client(_account()) as client:
        with pytest.raises(SyncRefusedError, match="check the device clock") as raised:
            await client.me()
    assert raised.value.status == 401 and len(recorder.requests) == 1


async def test_short_lived_tokens_are_not_refreshed_before_every_request() -> None:
    account = _account(expires_at=0)
    recorder = Recorder(
        lambda request: (
            httpx.Response(200, json={"access_token": "hcl_short", "expires_in": 40})
            if request.url.path.endswith("/refresh")
            else httpx.Response(200, json=_me(account.device_id))
        )
    )
    async with recorder.client(account, refresh_margin=60) as client:
        for _ in range(3):
            await client.me()
    paths = [r.url.path.rsplit("/", 1)[-1] for r in recorder.requests]
    assert paths == ["refresh", "me", "me", "me"]
