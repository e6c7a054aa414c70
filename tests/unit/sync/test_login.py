"""Sign-in flows without a network: ALTCHA solving, the device grant's polling, local
sign-in errors, what the server and the issuer must publish (httpx.MockTransport)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt as pyjwt
import pytest
from altcha.v1 import ChallengeOptions, create_challenge, verify_solution

from app.sync.client import InsecureServerError
from app.sync.dpop import DeviceKey
from app.sync.errors import SyncRetryLaterError
from app.sync.login import (
    DEVICE_CODE_GRANT,
    SignInError,
    default_device_name,
    sign_in_local,
    sign_in_methods,
    sign_in_with_browser,
    sign_in_with_device_code,
    sign_up_local,
    solve_altcha,
)

SERVER = "https://sync.example.org"
ISSUER = "https://id.example.org/realms/h"
NOW = "2026-11-30T08:00:00Z"


def _meta(oidc: bool = True, issuer: str = ISSUER) -> dict[str, Any]:
    return {
        "server_version": "1",
        "protocol_version": 1,
        "oidc": {
            "issuer": issuer,
            "client_id": "hushchat-desktop",
            "audience": "urn:hushchat:sync",
            "scopes": ["openid", "email", "offline_access"],
        }
        if oidc
        else None,
        "local_accounts": not oidc,
        "escrow": {"algorithm": "x", "public_key": "AAAA", "key_id": "e1"},
        "limits": {
            "max_record_bytes": 1,
            "max_request_bytes": 1,
            "max_batch_records": 1,
            "max_page_size": 1,
        },
        "recovery_delay_seconds": 1,
    }


def _me(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "acct-9",
            "issuer": ISSUER,
            "subject": "bob",
            "email": "bob@example.org",
            "email_verified": True,
            "cursor": 0,
            "device_id": request.headers["X-Hushchat-Device"],
            "created_at": NOW,
        },
    )


class World:
    """The sync server and the issuer behind one MockTransport."""

    def __init__(self, *, oidc: bool = True, device_endpoint: bool = True) -> None:
        self.oidc = oidc
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/auth",
            "token_endpoint": ISSUER + "/token",
        }
        if device_endpoint:
            self.discovery["device_authorization_endpoint"] = ISSUER + "/device/auth"
        self.token_answers: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []
        self.local_token: httpx.Response = httpx.Response(
            200, json={"access_token": "hcl_a", "refresh_token": "hcl_r", "expires_in": 900}
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host == "sync.example.org":
            if path == "/v1/meta":
                return httpx.Response(200, json=_meta(self.oidc))
            if path == "/v1/me":
                return _me(request)
            if path == "/v1/account/token":
                return self.local_token
        elif path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=self.discovery)
        elif path.endswith("/device/auth"):
            return httpx.Response(
                200,
                json={
                    "device_code": "dev-code-secret",
                    "user_code": "WDJB-MJHT",
                    "verification_uri": ISSUER + "/device",
                    "verification_uri_complete": ISSUER + "/device?user_code=WDJB-MJHT",
                    "expires_in": 600,
                    "interval": 2,
                },
            )
        elif path.endswith("/token"):
            return self.token_answers.pop(0)
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _oauth_error(error: str) -> httpx.Response:
    return httpx.Response(400, json={"error": error})


def _tokens() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": "at-1",
            "refresh_token": "rt-1",
            "expires_in": 300,
            "token_type": "Bearer",
        },
    )


# -- ALTCHA -----------------------------------------------------------------------------


def test_solve_altcha_passes_the_reference_verifier() -> None:
    created = create_challenge(ChallengeOptions(hmac_key="k" * 32, max_number=2000))
    challenge = {
        "algorithm": created.algorithm,
        "challenge": created.challenge,
        "maxnumber": created.max_number,
        "salt": created.salt,
        "signature": created.signature,
    }
    payload = solve_altcha(challenge)
    ok, _ = verify_solution(payload, "k" * 32, check_expires=False)
    assert ok
    decoded = json.loads(base64.b64decode(payload))
    assert decoded["salt"] == created.salt and 0 <= decoded["number"] <= 2000


def test_solve_altcha_refuses_other_algorithms_and_unsolvable_challenges() -> None:
    base = {"challenge": "00", "maxnumber": 10, "salt": "s", "signature": "x"}
    with pytest.raises(ValueError, match="unsupported"):
        solve_altcha({**base, "algorithm": "SHA-1"})
    with pytest.raises(ValueError, match="no solution"):
        solve_altcha({**base, "algorithm": "SHA-256"})


# -- device authorization grant ---------------------------------------------------------


async def test_device_grant_polls_through_pending_and_slow_down() -> None:
    world = World()
    world.token_answers = [
        _oauth_error("authorization_pending"),
        _oauth_error("slow_down"),
        _oauth_error("authorization_pending"),
        _tokens(),
    ]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    output = io.StringIO()
    key = DeviceKey.generate()
    account = await sign_in_with_device_code(
        SERVER, device_key=key, output=output, transport=world.transport(), sleep=sleep
    )
    assert slept == [2, 2, 7, 7]  # the interval, then 5 s more after slow_down
    assert "WDJB-MJHT" in output.getvalue() and ISSUER + "/device" in output.getvalue()
    assert "dev-code-secret" not in output.getvalue()
    assert account.access_token == "at-1" and account.refresh_token == "rt-1"
    assert account.account_id == "acct-9" and account.device_key is key
    assert account.token_endpoint == ISSUER + "/token" and account.client_id == "hushchat-desktop"

    device_request = next(r for r in world.requests if r.url.path.endswith("/device/auth"))
    form = parse_qs(device_request.content.decode())
    assert form["client_id"] == ["hushchat-desktop"]
    assert form["scope"] == ["openid email offline_access"]
    assert form["resource"] == ["urn:hushchat:sync"]
    polls = [r for r in world.requests if r.url.path.endswith("/token")]
    assert len(polls) == 4
    for poll in polls:
        body = parse_qs(poll.content.decode())
        assert body["grant_type"] == [DEVICE_CODE_GRANT]
        assert body["device_code"] == ["dev-code-secret"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("expired_token", "expired"),
        ("access_denied", "refused at the identity provider"),
        ("invalid_client", "invalid_client"),
    ],
)
async def test_device_grant_ends_on_errors(error: str, message: str) -> None:
    world = World()
    world.token_answers = [_oauth_error(error)]

    async def sleep(_: float) -> None:
        return None

    with pytest.raises(SignInError, match=message):
        await sign_in_with_device_code(
            SERVER, output=io.StringIO(), transport=world.transport(), sleep=sleep
        )


async def test_device_grant_needs_the_issuer_to_offer_it() -> None:
    world = World(device_endpoint=False)
    with pytest.raises(SignInError, match="does not offer sign-in with a code"):
        await sign_in_with_device_code(SERVER, output=io.StringIO(), transport=world.transport())


# -- what the server and the issuer must publish ----------------------------------------


async def test_a_server_without_oidc_points_to_local_accounts() -> None:
    world = World(oidc=False)
    with pytest.raises(SignInError, match="e-mail/password accounts"):
        await sign_in_with_browser(SERVER, open_browser=lambda _: True, transport=world.transport())


async def test_discovery_must_name_the_same_issuer() -> None:
    world = World()
    world.discovery["issuer"] = "https://evil.example.org"
    with pytest.raises(SignInError, match="does not name the issuer"):
        await sign_in_with_device_code(SERVER, output=io.StringIO(), transport=world.transport())


async def test_endpoints_must_be_https() -> None:
    world = World()
    world.discovery["token_endpoint"] = "http://id.example.org/token"
    with pytest.raises(InsecureServerError, match="must use https"):
        await sign_in_with_device_code(SERVER, output=io.StringIO(), transport=world.transport())


async def test_an_http_server_url_is_refused_before_anything_is_sent() -> None:
    world = World()
    with pytest.raises(InsecureServerError):
        await sign_in_local("http://sync.example.org", "a@b.c", "pw", transport=world.transport())
    assert world.requests == []


# -- local accounts ---------------------------------------------------------------------


async def test_local_sign_in_binds_the_token_to_this_devices_key() -> None:
    world = World(oidc=False)
    key = DeviceKey.generate()
    account = await sign_in_local(
        SERVER,
        "bob@example.org",
        "pw",
        device_key=key,
        device_name="Desk",
        transport=world.transport(),
    )
    token_request = world.requests[0]
    assert json.loads(token_request.content) == {
        "email": "bob@example.org",
        "password": "pw",
        "device_id": key.device_id,
    }
    proof = token_request.headers["DPoP"]
    claims = pyjwt.decode(
        proof, pyjwt.PyJWK(pyjwt.get_unverified_header(proof)["jwk"]).key, algorithms=["ES256"]
    )
    assert claims["htu"] == SERVER + "/v1/account/token" and "ath" not in claims
    assert account.sign_in == "local" and account.access_token == "hcl_a"
    assert account.device_name == "Desk" and account.email == "bob@example.org"
    me_request = world.requests[1]
    assert me_request.headers["X-Hushchat-Device-Name"] == "Desk"


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            httpx.Response(
                401, json={"title": "Unauthorized", "detail": "Wrong e-mail or password."}
            ),
            SignInError,
            "Wrong e-mail or password",
        ),
        (
            httpx.Response(404, json={"title": "Local accounts disabled"}),
            SignInError,
            "no e-mail/password accounts",
        ),
        (httpx.Response(429, headers={"Retry-After": "12"}), SyncRetryLaterError, "12 s"),
    ],
)
async def test_local_sign_in_errors(
    answer: httpx.Response, error: type[Exception], message: str
) -> None:
    world = World(oidc=False)
    world.local_token = answer
    with pytest.raises(error, match=message) as raised:
        await sign_in_local(
            SERVER, "bob@example.org", "hunter2-secret", transport=world.transport()
        )
    assert "hunter2-secret" not in str(raised.value)


def test_default_device_name_is_printable_ascii() -> None:
    name = default_device_name()
    assert name.startswith("Hushchat") and name.isascii() and len(name) <= 100


@pytest.mark.parametrize(
    ("oidc", "device_endpoint", "expected"),
    [
        (True, True, (ISSUER, True, True, False)),
        (True, False, (ISSUER, True, False, False)),
        (False, True, (None, False, False, True)),
    ],
)
async def test_sign_in_methods(
    oidc: bool, device_endpoint: bool, expected: tuple[object, ...]
) -> None:
    world = World(oidc=oidc, device_endpoint=device_endpoint)
    methods = await sign_in_methods(SERVER + "/", transport=world.transport())
    assert methods.server_url == SERVER
    assert (methods.issuer, methods.browser, methods.device_code, methods.local_accounts) == (
        expected
    )


async def test_sign_up_solves_the_captcha_and_reports_a_weak_password() -> None:
    created = create_challenge(ChallengeOptions(hmac_key="k" * 32, max_number=500))
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/captcha/challenge":
            return httpx.Response(
                200,
                json={
                    "algorithm": created.algorithm,
                    "challenge": created.challenge,
                    "maxnumber": created.max_number,
                    "salt": created.salt,
                    "signature": created.signature,
                },
            )
        bodies.append(json.loads(request.content))
        return httpx.Response(
            422,
            json={"title": "Password too short", "detail": "Use at least 10 characters."},
        )

    with pytest.raises(SignInError, match="Password too short: Use at least 10"):
        await sign_up_local(
            SERVER, "new@example.org", "short", transport=httpx.MockTransport(answer)
        )
    ok, _ = verify_solution(bodies[0]["altcha"], "k" * 32, check_expires=False)
    assert ok and bodies[0]["email"] == "new@example.org"
