"""The loopback redirect listener of the browser sign-in (real socket on 127.0.0.1; the
sync server and the issuer are an httpx.MockTransport): only the redirect with the right
state ends the wait, and what the issuer sends back is checked."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from app.sync.login import SignInError, sign_in_with_browser

SERVER = "https://sync.example.org"
ISSUER = "https://id.example.org"


def _world(requests: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if path == "/v1/meta":
            return httpx.Response(
                200,
                json={
                    "server_version": "1",
                    "protocol_version": 1,
                    "oidc": {
                        "issuer": ISSUER,
                        "client_id": "desk",
                        "audience": "aud",
                        "scopes": ["openid", "offline_access"],
                    },
                    "local_accounts": False,
                    "escrow": {"algorithm": "x", "public_key": "AAAA", "key_id": "e"},
                    "limits": {
                        "max_record_bytes": 1,
                        "max_request_bytes": 1,
                        "max_batch_records": 1,
                        "max_page_size": 1,
                    },
                    "recovery_delay_seconds": 1,
                },
            )
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": ISSUER + "/auth",
                    "token_endpoint": ISSUER + "/token",
                },
            )
        if path == "/token":
            return httpx.Response(
                200, json={"access_token": "at", "token_type": "Bearer", "expires_in": 60}
            )
        if path == "/v1/me":
            return httpx.Response(
                200,
                json={
                    "id": "a1",
                    "issuer": ISSUER,
                    "subject": "s",
                    "email": None,
                    "email_verified": False,
                    "cursor": 0,
                    "device_id": request.headers["X-Hushchat-Device"],
                    "created_at": "2026-11-30T08:00:00Z",
                },
            )
        return httpx.Response(404)

    return httpx.MockTransport(answer)


def _browser(*visits: Callable[[dict[str, str], str], str]) -> Callable[[str], bool]:
    """A browser that opens the URLs ``visits`` make from the authorization request."""

    def open_url(url: str) -> bool:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        redirect = query["redirect_uri"]
        with httpx.Client(timeout=5, trust_env=False) as client:
            for visit in visits:
                response = client.get(visit(query, redirect))
                pages.append((response.status_code, response.text))
        return True

    pages: list[tuple[int, str]] = []
    open_url.pages = pages  # type: ignore[attr-defined]
    return open_url


def _callback(**params: str) -> Callable[[dict[str, str], str], str]:
    def make(query: dict[str, str], redirect: str) -> str:
        values = {"state": query["state"], "code": "the-code", **params}
        return redirect + "?" + urlencode({k: v for k, v in values.items() if v != "-"})

    return make


async def test_the_authorization_request_and_the_code_exchange() -> None:
    requests: list[httpx.Request] = []
    browser = _browser(
        lambda q, r: r.replace("/callback", "/favicon.ico"),
        _callback(state="not-the-state"),
        _callback(iss=ISSUER),
        _callback(),  # the same redirect again: already used
    )
    account = await sign_in_with_browser(
        SERVER, open_browser=browser, output=io.StringIO(), transport=_world(requests)
    )
    assert account.access_token == "at" and account.refresh_token is None
    pages: list[tuple[int, str]] = browser.pages  # type: ignore[attr-defined]
    assert [status for status, _ in pages] == [404, 400, 200, 400]
    assert "close this tab" in pages[2][1] and "out of date" in pages[3][1]

    token = next(r for r in requests if r.url.path == "/token")
    form = parse_qs(token.content.decode())
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-code"]
    assert form["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert form["resource"] == ["aud"] and form["client_id"] == ["desk"]
    assert len(form["code_verifier"][0]) >= 43


async def test_the_authorization_url_asks_for_pkce_s256_and_consent() -> None:
    seen: list[str] = []

    def open_url(url: str) -> bool:
        seen.append(url)
        return _browser(_callback())(url)

    await sign_in_with_browser(
        SERVER, open_browser=open_url, output=io.StringIO(), transport=_world([]), login_hint="zoe"
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(seen[0]).query).items()}
    assert seen[0].startswith(ISSUER + "/auth?")
    assert query["response_type"] == "code" and query["client_id"] == "desk"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["scope"] == "openid offline_access" and query["prompt"] == "consent"
    assert query["resource"] == "aud" and query["login_hint"] == "zoe"
    assert urlsplit(query["redirect_uri"]).hostname == "127.0.0.1"
    assert len(query["state"]) >= 20


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"error": "access_denied", "error_description": "User said no", "code": "-"},
            "access_denied: User said no",
        ),
        ({"iss": "https://other.example.org"}, "another identity provider"),
        ({"code": ""}, "no authorization code"),
    ],
)
async def test_a_bad_authorization_response_is_a_sign_in_error(
    params: dict[str, str], message: str
) -> None:
    requests: list[httpx.Request] = []
    with pytest.raises(SignInError, match=message):
        await sign_in_with_browser(
            SERVER,
            open_browser=_browser(_callback(**params)),
            output=io.StringIO(),
            transport=_world(requests),
        )
    assert not any(r.url.path == "/token" for r in requests)


async def test_no_browser_and_a_browser_that_fails_print_the_url() -> None:
    output = io.StringIO()
    with pytest.raises(SignInError, match="within 1 s"):
        await sign_in_with_browser(
            SERVER,
            open_browser=lambda _: False,
            output=output,
            wait_seconds=1,
            transport=_world([]),
        )
    assert "open this address in a browser" in output.getvalue()
    assert ISSUER + "/auth?" in output.getvalue()


async def test_the_listener_is_on_loopback_only_and_gone_afterwards() -> None:
    ports: list[int] = []

    def open_url(url: str) -> bool:
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        port = urlsplit(redirect).port
        assert port is not None
        ports.append(port)
        return _browser(_callback())(url)

    await sign_in_with_browser(
        SERVER, open_browser=open_url, output=io.StringIO(), transport=_world([])
    )
    await asyncio.sleep(0)
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(1)
        probe.connect(("127.0.0.1", ports[0]))
